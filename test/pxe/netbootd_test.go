package pxetest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"netboot/internal/config"
	"netboot/internal/event"
	"netboot/internal/testenv"
	"netboot/test/harness"
)

// daemonConfig is netbootd's config for the namespace: every listener on
// the bridge address, DHCP (full) and router advertisements on the bridge.
const daemonConfig = `
server: {address: 10.66.0.1, artifact_root: %s, api_token: test-token}
tftp: {listen: "10.66.0.1:69"}
http: {listen: "10.66.0.1:8080"}
netconsole: {listen: "10.66.0.1:6666"}
store: {path: %s}
dhcp: {mode: %s, interfaces: [nbbr0], netmask: 255.255.255.0, router_advert: true, ipxe_rechain: %v}
`

// TestNetbootdBoot runs the real netbootd binary inside a namespace and
// network-boots QEMU through it, with the firmware fetched over TFTP:
//   - OVMF's own UEFI PXE client (the Udoo's path): DHCP arch 7 → ipxe.efi
//     over TFTP → iPXE → per-host script, kernel, initrd over HTTP;
//   - the same in proxyDHCP mode beside dnsmasq (the homelab case: the
//     router hands out the address, netbootd the boot information);
//   - SeaBIOS with the NIC's iPXE ROM and dhcp.ipxe_rechain: the ROM gets
//     undionly.kpxe over TFTP, that iPXE gets the script.
//
// The boot attempt that netbootd's tracker opened (read through the API)
// must show the dhcp, firmware, kernel and initramfs stages, in order, and
// the TFTP firmware fetch.
func TestNetbootdBoot(t *testing.T) {
	testenv.Short(t)
	harness.RequireNetns(t)
	harness.RequireQEMU(t)
	kernel := harness.Kernel(t, "amd64")
	initrd := harness.BuildBusyboxInitramfs(t, harness.BusyboxInitramfs{Kernel: kernel, Init: guestInit})
	bin := buildNetbootd(t)
	root := filepath.Join(t.TempDir(), "root")
	for name, src := range map[string]string{
		"ipxe/ipxe.efi": "/usr/lib/ipxe/ipxe.efi", "ipxe/undionly.kpxe": "/usr/lib/ipxe/undionly.kpxe",
		"x86/vmlinuz": kernel.Vmlinuz, "x86/initrd.img": initrd,
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), readFile(t, src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, host, mac, nic, firmware string
		uefi, rechain                  bool
		// proxy: proxyDHCP beside dnsmasq, the network's DHCP server.
		proxy bool
	}{
		{name: "ovmf-uefi-pxe", host: "uefi1", mac: "52:54:00:66:00:11", nic: "virtio-net-pci,romfile=", uefi: true, firmware: "ipxe/ipxe.efi"},
		{name: "ovmf-uefi-pxe-proxydhcp", host: "uefi1", mac: "52:54:00:66:00:11", nic: "virtio-net-pci,romfile=", uefi: true, firmware: "ipxe/ipxe.efi", proxy: true},
		{name: "seabios-ipxe-rechain", host: "bios1", mac: "52:54:00:66:00:10", rechain: true, firmware: "ipxe/undionly.kpxe"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := harness.ArtifactDir(t)
			cfgPath := filepath.Join(dir, "netbootd.yaml")
			mode := config.DHCPFull
			if tc.proxy {
				mode = config.DHCPProxy
			}
			cfg := fmt.Sprintf(daemonConfig, root, filepath.Join(t.TempDir(), "netboot.db"), mode, tc.rechain) + testHosts
			if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			ns := harness.NewNetns(t, harness.NetnsConfig{Part: "nbpxe", Bridge: bridgePrefix})
			if tc.proxy {
				startDnsmasq(t, ns, dir)
			}
			logPath := filepath.Join(dir, "netbootd.log")
			ns.Start(t, logPath, bin, "--config", cfgPath)
			waitForLog(t, logPath, "netbootd: started")

			vm := harness.StartVM(t, harness.VMConfig{Name: tc.name, Netns: ns, MAC: tc.mac, NIC: tc.nic, BootNet: true, UEFI: tc.uefi, NoReboot: true, Dir: dir})
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Second)
			defer cancel()
			line := vm.Expect(t, ctx, `NBPXE-MARKER: initramfs up`)
			if !strings.Contains(line.Text, "nbtest.host="+tc.host) {
				t.Fatalf("the kernel cmdline lacks the host's rendered template: %q", line.Text)
			}
			rep := latestBoot(t, ns, tc.host)
			var got []string
			for _, s := range rep.Stages {
				got = append(got, s.Stage.String())
			}
			if want := "dhcp,firmware,kernel,initramfs"; !strings.HasPrefix(strings.Join(got, ","), want) {
				t.Fatalf("boot %d stages = %v, want them to start %s (report %+v)", rep.BootID, got, want, rep)
			}
			var tftpFirmware bool
			for _, f := range rep.Fetches {
				tftpFirmware = tftpFirmware || (f.Proto == "tftp" && f.File == tc.firmware && !f.Failed)
			}
			if !tftpFirmware {
				t.Fatalf("boot %d has no TFTP fetch of %s: %+v", rep.BootID, tc.firmware, rep.Fetches)
			}
		})
	}
}

// bootReport is the part of the API's boot report this test reads.
type bootReport struct {
	BootID int64 `json:"boot_id"`
	Stages []struct {
		Stage event.Stage `json:"stage"`
	} `json:"stages"`
	Fetches []struct {
		Proto, File string
		Failed      bool
	} `json:"fetches"`
}

// latestBoot asks netbootd's API (inside the namespace) for host's latest boot.
func latestBoot(t *testing.T, ns *harness.Netns, host string) bootReport {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) { return ns.Dial(ctx, network, addr) },
	}}
	resp, err := client.Get("http://10.66.0.1:8080/api/v1/hosts/" + host + "/boots/latest")
	if err != nil {
		t.Fatalf("ask netbootd for the boot: %v", err)
	}
	defer resp.Body.Close()
	var rep bootReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("boot report: status %d, %v", resp.StatusCode, err)
	}
	return rep
}

// buildNetbootd compiles cmd/netbootd into the test's temp dir.
func buildNetbootd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "netbootd")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(gobin, "build", "-o", bin, "netboot/cmd/netbootd").CombinedOutput()
	if err != nil {
		t.Fatalf("build netbootd: %v: %s", err, out)
	}
	return bin
}
