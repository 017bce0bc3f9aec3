package pxe

import (
	"path/filepath"
	"strings"
	"testing"

	"netboot/internal/config"
)

const ipxeTestConfig = `
server:
  address: 10.99.0.1
  artifact_root: /nonexistent
classes:
  x86:
    arch: amd64
    firmware: uefi
    kernel: vmlinuz
    initrd: initrd.img
    cmdline: "console=ttyS0,115200 nb.host={{.name}} nb.server={{.server}} root={{.rootdev}}"
    variables: {rootdev: /dev/rbd0}
  nb:
    arch: amd64
    dir: x86
    kernel: vmlinuz
    initrd: nbinit
    cmdline: "console=ttyS0 nb.api={{.http_url}} nb.image={{.pool}}/{{.image}}"
  bare: {arch: amd64, kernel: boot/vmlinuz, initrd: /shared/initrd.img}
  broken: {arch: amd64, kernel: vmlinuz, initrd: initrd.img, cmdline: "x={{.nosuchvar}}"}
hosts:
  - {name: udoo, mac: "00:c0:08:9d:11:22", ip: 10.99.0.30, class: x86, variables: {rootdev: /dev/rbd1}}
  - {name: vm1, mac: "52:54:00:12:34:56", class: nb, rbd: {pool: rbd, image: vm1-root}}
  - {name: bare1, mac: "52:54:00:12:34:57", class: bare}
  - {name: broken1, mac: "52:54:00:12:34:58", class: broken}
`

func TestScript(t *testing.T) {
	cfg, err := config.Parse("test.yaml", t.TempDir(), []byte(ipxeTestConfig))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host    string
		wantErr string
	}{
		{host: "udoo"},
		{host: "vm1"},
		{host: "bare1"},
		{host: "broken1", wantErr: "nosuchvar"},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			h, _ := cfg.HostByName(tc.host)
			got, err := Script(cfg, h, "http://10.99.0.1:8080/")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Script(%s) error = %v, want one mentioning %q", tc.host, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Script(%s): %v", tc.host, err)
			}
			golden(t, filepath.Join("testdata", "dhcp-golden", "ipxe-"+tc.host+".ipxe"), string(got))
		})
	}
}
