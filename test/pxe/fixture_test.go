package pxetest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/event"
	"netboot/internal/event/eventtest"
	"netboot/pxe"
	"netboot/test/harness"
)

// Addresses of the test network (inside the namespaces only).
var (
	bridgePrefix = netip.MustParsePrefix("10.66.0.1/24")
	serverIP     = bridgePrefix.Addr()
)

// testHosts are the inventory of every test here.
const testHosts = `
classes:
  x86:
    arch: amd64
    firmware: bios
    kernel: vmlinuz
    initrd: initrd.img
    cmdline: "console=ttyS0,115200 panic=-1 nbtest.host={{.name}}"
hosts:
  - {name: bios1, mac: "52:54:00:66:00:10", ip: 10.66.0.10, class: x86}
  - {name: uefi1, mac: "52:54:00:66:00:11", ip: 10.66.0.11, class: x86}
  - {name: client1, mac: "52:54:00:66:00:20", ip: 10.66.0.20, class: x86}
  - {name: client2, mac: "52:54:00:66:00:21", ip: 10.66.0.21, class: x86}
`

// events records what the servers emit.
type events struct{ eventtest.Recorder }

// find returns the events of host matching kind (and stage, unless None).
func (e *events) find(host string, kind event.Kind, stage event.Stage) []event.Event {
	var out []event.Event
	for _, ev := range e.Events() {
		if ev.Host == host && ev.Kind == kind && (stage == event.StageNone || ev.Stage == stage) {
			out = append(out, ev)
		}
	}
	return out
}

// bootServers are netboot's pxe servers running in-process with their
// sockets inside a test namespace.
type bootServers struct {
	ns     *harness.Netns
	cfg    *config.Config
	root   string
	events *events
	reg    *prometheus.Registry
	log    *zap.Logger
}

// newBootServers writes the config and an artifact root (files: path →
// content) and returns servers not yet started.
func newBootServers(t *testing.T, ns *harness.Netns, files map[string][]byte) *bootServers {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	yaml := "server: {address: " + serverIP.String() + ", artifact_root: root}\n" + testHosts
	cfg, err := config.Parse("pxetest.yaml", dir, []byte(yaml))
	if err != nil {
		t.Fatalf("test config: %v", err)
	}
	return &bootServers{ns: ns, cfg: cfg, root: root, events: &events{}, reg: prometheus.NewRegistry(), log: zaptest.NewLogger(t)}
}

// serve runs srv until the test ends; a failure other than shutdown fails
// the test.
func serve(t *testing.T, name string, srv interface {
	Serve(context.Context) error
	Close() error
}) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		srv.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: Serve: %v", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s: Serve did not return after Close", name)
		}
	})
}

// startDHCP starts DHCP on the bridge (port 67, and 4011 in proxy mode).
func (b *bootServers) startDHCP(t *testing.T, mode string, httpURL string) *pxe.Leases {
	t.Helper()
	return b.startDHCPOn(t, b.ns.BridgeDev, mode, httpURL)
}

// startDHCPOn starts DHCP bound to ifname.
func (b *bootServers) startDHCPOn(t *testing.T, ifname, mode string, httpURL string) *pxe.Leases {
	t.Helper()
	inv := pxe.NewInventory(b.cfg)
	leases := pxe.NewLeases(inv)
	ports := []int{67}
	if mode == config.DHCPProxy {
		ports = append(ports, 4011)
	}
	for _, port := range ports {
		var conn net.PacketConn
		err := b.ns.Do(func() (err error) {
			conn, err = server4.NewIPv4UDPConn(ifname, &net.UDPAddr{Port: port})
			return err
		})
		if err != nil {
			t.Fatalf("bind dhcp port %d in %s: %v", port, b.ns.Name, err)
		}
		srv, err := pxe.NewDHCP(pxe.DHCPConfig{
			Mode: mode, ProxyPort: port == 4011, Interface: ifname, ServerIP: serverIP, HTTPURL: httpURL,
			Netmask: netip.MustParseAddr("255.255.255.0"), Router: serverIP,
		}, conn, pxe.DHCPDeps{Log: b.log.Named("dhcp"), Clock: clock.Real{}, Sink: b.events, Registerer: b.reg, Inventory: inv, Leases: leases})
		if err != nil {
			t.Fatal(err)
		}
		serve(t, "dhcp", srv)
	}
	return leases
}

// startRA advertises a ULA prefix on the bridge so that iPXE does not wait
// ~20 s for IPv6 autoconfiguration (dhcp.router_advert).
func (b *bootServers) startRA(t *testing.T) {
	t.Helper()
	var ra *pxe.RouterAdvertiser
	err := b.ns.Do(func() error {
		conn, err := pxe.ListenRA()
		if err != nil {
			return err
		}
		ra, err = pxe.NewRA(pxe.RAConfig{Interface: b.ns.BridgeDev}, conn, pxe.RADeps{Log: b.log.Named("ra"), Registerer: b.reg})
		if err != nil {
			conn.Close()
		}
		return err
	})
	if err != nil {
		t.Fatalf("router advertiser in %s: %v", b.ns.Name, err)
	}
	serve(t, "ra", ra)
}

// startFileServers starts TFTP (port 69) and HTTP (port 8080) on the
// bridge address and returns the HTTP base URL.
func (b *bootServers) startFileServers(t *testing.T, leases *pxe.Leases) string {
	t.Helper()
	arts, err := pxe.NewArtifacts(b.cfg, leases, pxe.ArtifactsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { arts.Close() })
	tconn := b.ns.ListenPacket(t, "udp4", serverIP.String()+":69")
	tsrv, err := pxe.NewTFTP(pxe.TFTPConfig{}, tconn, arts, b.events, b.log, clock.Real{}, b.reg)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, "tftp", tsrv)
	base := "http://" + serverIP.String() + ":8080"
	h, err := pxe.NewHTTP(pxe.HTTPConfig{BaseURL: base}, pxe.HTTPDeps{
		Log: b.log.Named("http"), Sink: b.events, Registerer: b.reg, Inventory: pxe.NewInventory(b.cfg), Artifacts: arts, Hosts: leases,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln := b.ns.Listen(t, "tcp4", serverIP.String()+":8080")
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !strings.Contains(err.Error(), "closed") {
			t.Errorf("http: %v", err)
		}
	}()
	t.Cleanup(func() { hs.Close() })
	return base
}
