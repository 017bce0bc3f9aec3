package main

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"netboot/initramfs"
)

func runInitramfsCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"initramfs"}, args...))
	err := cmd.Execute()
	return out.String(), err
}

func TestInitramfsCmd(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "img")
	var buf bytes.Buffer
	if err := initramfs.WriteSegment(&buf, []initramfs.File{{Path: "etc/nbinit/config.json", Data: []byte("{}")}}, gzip.BestSpeed); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(img, append(buf.Bytes(), buf.Bytes()...), 0o644)
	tests := []struct {
		name    string
		args    []string
		want    string
		wantErr string
	}{
		{"list two segments", []string{"list", img}, "etc/nbinit/config.json", ""},
		{"list garbage", []string{"list", "initramfs_test.go"}, "", "segment"},
		{"bad arch", []string{"build", "--arch", "riscv64", "--out", filepath.Join(dir, "x"), "--cache", dir}, "", "unsupported arch"},
		{"out required", []string{"build", "--arch", "amd64"}, "", "out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runInitramfsCmd(t, tt.args...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q (out %s)", err, tt.wantErr, out)
				}
				return
			}
			if err != nil || strings.Count(out, tt.want) != 2 {
				t.Errorf("out = %q, err %v; want %q in both segments", out, err, tt.want)
			}
		})
	}
}
