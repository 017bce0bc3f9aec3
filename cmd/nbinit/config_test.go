package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		in   string
		want map[string]string
	}{
		{"", map[string]string{}},
		{"console=ttyS0 quiet nb.host=node1\n", map[string]string{"console": "ttyS0", "quiet": "", "nb.host": "node1"}},
		{`nb.rootflags="a b" x="y z"`, map[string]string{"nb.rootflags": "a b", "x": "y z"}},
		{"nb.on-fail=reboot", map[string]string{"nb.on_fail": "reboot"}},
		{"a=b=c", map[string]string{"a": "b=c"}},
	}
	for _, tt := range tests {
		if got := parseCmdline(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseCmdline(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	tests := []struct {
		name, file, cmdline string
		want                Config
		wantErr             string
	}{
		{"defaults", "", "", Config{OnFailure: "shell", Deadline: Duration(5 * time.Minute), CarrierTimeout: Duration(30 * time.Second),
			RootFSType: "ext4", Init: "/sbin/init", Shell: "/bin/sh"}, ""},
		{"cmdline wins", `{"host":"a","server":"1.2.3.4:80","deadline":"1m"}`, "nb.host=b nb.deadline=2m nb.onfail=reboot",
			Config{Host: "b", Server: "1.2.3.4:80", OnFailure: "reboot", Deadline: Duration(2 * time.Minute), CarrierTimeout: Duration(30 * time.Second),
				RootFSType: "ext4", Init: "/sbin/init", Shell: "/bin/sh"}, ""},
		{"bad json", `{`, "", Config{}, "parse config"},
		{"bad deadline", "", "nb.deadline=soon", Config{}, "nb.deadline"},
		{"bad action", "", "nb.onfail=explode", Config{}, "on_failure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(path)
			if tt.file != "" {
				os.WriteFile(path, []byte(tt.file), 0o644)
			}
			got, err := loadConfig(path, tt.cmdline)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("loadConfig = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestParseModuleList(t *testing.T) {
	got, err := parseModuleList([]byte("# x\n/lib/a.ko\n\n/lib/b.ko opt=1 x=2\n"))
	want := []moduleEntry{{"/lib/a.ko", ""}, {"/lib/b.ko", "opt=1 x=2"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("parseModuleList = %v, %v", got, err)
	}
	if _, err := parseModuleList([]byte("rel.ko\n")); err == nil {
		t.Error("relative module path accepted")
	}
}

func FuzzParseCmdline(f *testing.F) {
	f.Add(`console=ttyS0 nb.host=x nb.rootflags="a b"`)
	f.Add(`"unterminated nb.server=1.2.3.4:80`)
	f.Add("a==b\t\nc")
	f.Fuzz(func(t *testing.T, s string) {
		for k := range parseCmdline(s) {
			if strings.ContainsAny(k, " \t\n") {
				t.Fatalf("key %q contains whitespace", k)
			}
		}
	})
}

func FuzzParseModuleList(f *testing.F) {
	f.Add("/lib/modules/nbinit/rbd.ko\n/lib/x.ko a=b\n")
	f.Add("#c\nrel\n")
	f.Fuzz(func(t *testing.T, s string) {
		mods, err := parseModuleList([]byte(s))
		if err != nil {
			return
		}
		for _, m := range mods {
			if !strings.HasPrefix(m.Path, "/") || strings.ContainsAny(m.Path, " \n") {
				t.Fatalf("bad entry %+v", m)
			}
		}
	})
}
