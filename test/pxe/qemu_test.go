package pxetest

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"netboot/internal/config"
	"netboot/internal/event"
	"netboot/internal/testenv"
	"netboot/test/harness"
)

// guestInit is the test initramfs's /init: it proves the kernel and the
// initramfs that iPXE loaded over HTTP run, with the host's cmdline.
const guestInit = `#!/bin/sh
mount -t proc proc /proc
echo "NBPXE-MARKER: initramfs up: $(cat /proc/cmdline)"
poweroff -f
`

// TestQEMUNetboot network-boots QEMU with its real firmware from our DHCP,
// router advertisements and HTTP servers running in-process with sockets
// in a namespace: SeaBIOS and OVMF, each with the NIC's iPXE ROM (iPXE
// asks DHCP itself, for x86 BIOS and for x86-64 EFI, and gets the per-host
// script URL). iPXE then fetches the per-host script, kernel and initrd
// over HTTP; the initramfs prints a marker with the rendered cmdline. The
// host's events must show the dhcp, firmware (the script: iPXE runs),
// kernel and initramfs stages in order.
func TestQEMUNetboot(t *testing.T) {
	testenv.Short(t)
	harness.RequireNetns(t)
	harness.RequireQEMU(t)
	kernel := harness.Kernel(t, "amd64")
	initrd := harness.BuildBusyboxInitramfs(t, harness.BusyboxInitramfs{Kernel: kernel, Init: guestInit})
	files := map[string][]byte{
		"ipxe/undionly.kpxe": readFile(t, "/usr/lib/ipxe/undionly.kpxe"),
		"ipxe/ipxe.efi":      readFile(t, "/usr/lib/ipxe/ipxe.efi"),
		"x86/vmlinuz":        readFile(t, kernel.Vmlinuz),
		"x86/initrd.img":     readFile(t, initrd),
	}
	tests := []struct {
		name, host, mac, nic string
		uefi                 bool
		// proxy runs proxyDHCP beside dnsmasq (the network's DHCP server,
		// which hands out a dynamic address): the host's HTTP fetches are
		// attributed through the address DHCP saw it request.
		proxy bool
		// firmwareFile is the file whose TFTP fetch is the firmware stage
		// ("" when the NIC ROM is iPXE itself: then its script fetch is).
		firmwareFile string
	}{
		{name: "seabios-ipxe-rom", host: "bios1", mac: "52:54:00:66:00:10"},
		{name: "seabios-ipxe-rom-proxydhcp", host: "bios1", mac: "52:54:00:66:00:10", proxy: true},
		// OVMF with the NIC's iPXE EFI ROM: iPXE again does DHCP itself.
		{name: "ovmf-ipxe-rom", host: "uefi1", mac: "52:54:00:66:00:11", uefi: true},
		// OVMF's own UEFI PXE client (the Udoo's path: ipxe.efi over TFTP)
		// runs in TestNetbootdUEFIBoot, with netbootd as a process in the
		// namespace: the TFTP server opens a socket per transfer, which
		// in-process must happen inside the namespace too.
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := harness.NewNetns(t, harness.NetnsConfig{Part: "nbpxe", Bridge: bridgePrefix})
			b := newBootServers(t, ns, files)
			mode := config.DHCPFull
			if tc.proxy {
				mode = config.DHCPProxy
				startDnsmasq(t, ns, t.TempDir())
			}
			leases := b.startDHCP(t, mode, "http://10.66.0.1:8080")
			b.startFileServers(t, leases)
			b.startRA(t)
			vm := harness.StartVM(t, harness.VMConfig{Name: tc.name, Netns: ns, MAC: tc.mac, NIC: tc.nic, BootNet: true, UEFI: tc.uefi, NoReboot: true})
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Second)
			defer cancel()
			line := vm.Expect(t, ctx, `NBPXE-MARKER: initramfs up`)
			if !strings.Contains(line.Text, "nbtest.host="+tc.host) {
				t.Fatalf("the kernel cmdline lacks the host's rendered template: %q", line.Text)
			}
			checkBootEvents(t, b.events, tc.host, tc.firmwareFile)
		})
	}
}

// checkBootEvents: the host's events show each of the first four stages,
// in order, attributed to it.
func checkBootEvents(t *testing.T, evs *events, host, firmwareFile string) {
	t.Helper()
	first := map[event.Stage]int{}
	var all []string
	for i, ev := range evs.Events() {
		all = append(all, string(ev.Kind)+"/"+ev.Stage.String()+"/"+ev.Host+"/"+ev.Attr("proto")+":"+ev.Attr("file"))
		if ev.Host != host || ev.Failed || ev.Kind == event.DHCPIgnored || ev.Kind == event.FileFailed {
			continue
		}
		if _, seen := first[ev.Stage]; !seen {
			first[ev.Stage] = i
		}
		if ev.Stage == event.StageFirmware && firmwareFile != "" && ev.Attr("file") == firmwareFile && ev.Attr("proto") != "tftp" {
			t.Errorf("firmware %s came over %s, want tftp", firmwareFile, ev.Attr("proto"))
		}
	}
	if firmwareFile != "" && !hasFile(evs.find(host, event.FileFetched, event.StageFirmware), firmwareFile) {
		t.Errorf("no firmware fetch of %s for %s", firmwareFile, host)
	}
	prev := -1
	for _, s := range []event.Stage{event.StageDHCP, event.StageFirmware, event.StageKernel, event.StageInitramfs} {
		i, ok := first[s]
		if !ok {
			t.Fatalf("no %s event for %s; events:\n%s", s, host, strings.Join(all, "\n"))
		}
		if i < prev {
			t.Fatalf("stage %s came before the previous stage; events:\n%s", s, strings.Join(all, "\n"))
		}
		prev = i
	}
}

func hasFile(evs []event.Event, file string) bool {
	for _, ev := range evs {
		if ev.Attr("file") == file {
			return true
		}
	}
	return false
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		testenv.Unavailable(t, "boot file: "+err.Error())
	}
	return b
}
