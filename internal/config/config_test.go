package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestErrorsGolden checks that every problem of a broken file is reported,
// each with its line, in line order.
func TestErrorsGolden(t *testing.T) {
	for _, name := range []string{"bad", "unknown-field"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", name+".yaml")
			_, err := Load(path)
			if err == nil {
				t.Fatal("Load succeeded on a broken file")
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want config.Errors", err)
			}
			for _, e := range errs {
				if e.Line == 0 {
					t.Errorf("error without a line number: %v", e)
				}
			}
			golden := filepath.Join("testdata", name+".golden")
			got := err.Error() + "\n"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s (rerun with -update to accept):\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	cfg, err := Load("../../images/example/netbootd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DHCP.Mode != DHCPOff {
		t.Errorf("example config must not serve DHCP, mode = %q", cfg.DHCP.Mode)
	}
	for _, addr := range []string{cfg.TFTP.Listen, cfg.HTTP.Listen, cfg.Netconsole.Listen} {
		if !strings.HasPrefix(addr, "127.") {
			t.Errorf("example listener %q is not on loopback", addr)
		}
	}
	h, ok := cfg.HostByName("cm4-01")
	if !ok || h.Arch != ArchARM64 {
		t.Fatalf("cm4-01 arch = %v (found %v), want inherited arm64", h, ok)
	}
	vars := cfg.HostVariables(h)
	if vars["name"] != "cm4-01" || vars["serial"] != "d9780558" || vars["image"] != "cm4-01-root" {
		t.Errorf("HostVariables = %v", vars)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse("t.yaml", "/etc/netboot", []byte("server: {artifact_root: /srv/boot}\n"))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"server.address", cfg.Server.Address, "127.0.0.1"},
		{"tftp.listen", cfg.TFTP.Listen, "127.0.0.1:69"},
		{"tftp.block_size_max", cfg.TFTP.BlockSizeMax, 1468},
		{"tftp.timeout", cfg.TFTP.Timeout.String(), "2s"},
		{"http.listen", cfg.HTTP.Listen, "127.0.0.1:8080"},
		{"netconsole.listen", cfg.Netconsole.Listen, "127.0.0.1:6666"},
		{"dhcp.mode", cfg.DHCP.Mode, DHCPOff},
		{"store.path", cfg.Store.Path, "/etc/netboot/netboot.db"},
		{"rbd.unrecorded_same_ip", cfg.RBD.UnrecordedSameIP, "refuse"},
		{"rbd.remove_range_blocklist", *cfg.RBD.RemoveRangeBlocklist, true},
		{"ceph.timeout", cfg.Ceph.Timeout.String(), "10s"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestEmptyFileNeedsArtifactRoot(t *testing.T) {
	_, err := Parse("empty.yaml", "/", nil)
	if err == nil || !strings.Contains(err.Error(), "artifact_root: is required") {
		t.Fatalf("err = %v, want artifact_root required", err)
	}
}

// FuzzParse: no input may panic, and every rejection is a config.Errors.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"bad.yaml", "unknown-field.yaml", "../../../images/example/netbootd.yaml"} {
		if b, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("hosts: [{name: a, mac: '00:11:22:33:44:55', class: c}]\nclasses: {c: {arch: amd64}}\nserver: {artifact_root: r}\n"))
	f.Add([]byte("server: {address: [1,2]}\n"))
	f.Add([]byte("\t\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", "/tmp", data)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("rejection is %T (%v), want non-empty config.Errors", err, err)
			}
			return
		}
		if cfg.Server.ArtifactRoot == "" {
			t.Fatal("accepted a config without artifact_root")
		}
	})
}
