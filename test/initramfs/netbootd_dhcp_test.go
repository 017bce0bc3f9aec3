package initramfs

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/server4"

	"netboot/internal/config"
	"netboot/internal/testenv"
	"netboot/pxe"
	"netboot/test/harness"
)

// TestAmd64NetbootdDHCP is TestAmd64RefusedPrepare with netbootd's own DHCP
// server (pxe, full mode with the host's reservation) instead of dnsmasq.
func TestAmd64NetbootdDHCP(t *testing.T) {
	testenv.Short(t)
	harness.RequireQEMU(t)
	vmlinuz, modules := debianKernel(t, "amd64")
	ns := newNetns(t)
	img := buildImage(t, "amd64", modules, hostConfig(ns))
	c := startCollector(t, ns)
	dir := harness.ArtifactDir(t)
	api := startAPI(t, ns)
	startPXEDHCP(t, ns)
	vm := harness.StartVM(t, harness.VMConfig{Name: "nbinit-amd64-pxedhcp", Netns: ns, Dir: dir, MAC: guestMAC, NoReboot: true,
		Kernel: vmlinuz, Initrd: img, Append: "console=ttyS0 " + kernelArgs})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	checkModules(t, vm.Expect(t, ctx, `nbinit: stage=init status=ok`).Text)
	checkRefusalFlow(t, ctx, c, api)
	stillAlive(t, vm.Proc, vm.Serial, 3*time.Second)
}

// startPXEDHCP serves full DHCP on the namespace's bridge with node1's
// reservation, the way netbootd does (cmd/netbootd/pxe.go).
func startPXEDHCP(t *testing.T, ns *harness.Netns) {
	t.Helper()
	inv := &config.Config{
		Classes: map[string]config.Class{"x86": {Arch: config.ArchAMD64, Initrd: pxe.InitrdNBInit}},
		Hosts:   []config.Host{{Name: hostName, MAC: guestMAC, IP: guestIP, Class: "x86", Arch: config.ArchAMD64}},
	}
	var conn net.PacketConn
	if err := ns.Do(func() (err error) {
		conn, err = server4.NewIPv4UDPConn(ns.BridgeDev, &net.UDPAddr{Port: 67})
		return err
	}); err != nil {
		t.Fatalf("dhcp socket in %s: %v", ns.Name, err)
	}
	pinv := pxe.NewInventory(inv)
	srv, err := pxe.NewDHCP(pxe.DHCPConfig{Mode: config.DHCPFull, Interface: ns.BridgeDev, ServerIP: ns.Addr,
		Netmask: netip.MustParseAddr("255.255.255.0"), Router: ns.Addr},
		conn, pxe.DHCPDeps{Inventory: pinv, Leases: pxe.NewLeases(pinv)})
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("pxe dhcp: %v", err)
		}
	})
}
