package pxetest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"

	"netboot/internal/config"
	"netboot/internal/event"
	"netboot/internal/testenv"
	"netboot/test/harness"
)

// lease is what a real DHCP client ended up with.
type lease struct {
	IP, Server, File string
}

// TestDHCPRealClients runs busybox udhcpc and ISC dhclient (with PXE vendor
// classes) against our DHCP server in full mode, and in proxy mode beside
// dnsmasq as the network's DHCP server, each in its own namespace on one
// bridge. It checks what the client took and every packet it received.
func TestDHCPRealClients(t *testing.T) {
	testenv.RequireTools(t, "udhcpc", "dhclient", "dnsmasq", "tcpdump", "ip")
	harness.RequireNetns(t)
	tests := []struct {
		name, mode, client, host, mac string
		vendor                        string
		arch                          uint16
		wantFile                      string
	}{
		{"full/udhcpc-bios", config.DHCPFull, "udhcpc", "client1", "52:54:00:66:00:20", "PXEClient:Arch:00000:UNDI:002001", 0, "ipxe/undionly.kpxe"},
		{"full/dhclient-uefi", config.DHCPFull, "dhclient", "client2", "52:54:00:66:00:21", "PXEClient:Arch:00007:UNDI:003016", 7, "ipxe/ipxe.efi"},
		{"proxy/udhcpc-bios", config.DHCPProxy, "udhcpc", "client1", "52:54:00:66:00:20", "PXEClient:Arch:00000:UNDI:002001", 0, "ipxe/undionly.kpxe"},
		{"proxy/dhclient-uefi", config.DHCPProxy, "dhclient", "client2", "52:54:00:66:00:21", "PXEClient:Arch:00007:UNDI:003016", 7, "ipxe/ipxe.efi"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := harness.NewNetns(t, harness.NetnsConfig{Part: "nbpxe", Bridge: bridgePrefix})
			b := newBootServers(t, ns, nil)
			leases := b.startDHCP(t, tc.mode, "http://10.66.0.1:8080")
			dir := harness.ArtifactDir(t)
			if tc.mode == config.DHCPProxy {
				startDnsmasq(t, ns, dir)
			}
			peer := ns.AddPeer(t, tc.mac, netip.Prefix{})
			capture := startCapture(t, peer, dir)
			var got lease
			switch tc.client {
			case "udhcpc":
				// In proxy mode busybox udhcpc takes the first offer even
				// without an address (ours, usually) and fails; PXE ROMs
				// and iPXE merge both offers. Its lease is not judged there.
				want := udhcpcBound
				if tc.mode == config.DHCPProxy {
					want = udhcpcAny
				}
				got = runUdhcpc(t, peer, dir, tc.vendor, tc.arch, want)
			case "dhclient":
				got = runDhclient(t, peer, dir, tc.vendor, tc.arch)
			}
			pkts := capture.stop(t)
			ours := fromServer(pkts, serverIP)
			if len(ours) == 0 {
				t.Fatalf("the client received nothing from our server; packets: %s", describePackets(pkts))
			}
			for _, p := range ours {
				checkBootReply(t, p, tc.wantFile)
			}
			switch tc.mode {
			case config.DHCPFull:
				want := lease{IP: hostIP(t, b.cfg, tc.host), Server: serverIP.String(), File: tc.wantFile}
				if got != want {
					t.Fatalf("%s took %+v, want %+v", tc.client, got, want)
				}
			case config.DHCPProxy:
				for _, p := range ours {
					if !p.Msg.YourIPAddr.IsUnspecified() || p.Msg.ClassIdentifier() != "PXEClient" {
						t.Fatalf("proxy reply must carry no address and option 60 PXEClient: %s", p.Msg.Summary())
					}
				}
				offered := dnsmasqOffer(t, pkts)
				switch tc.client {
				case "dhclient":
					ip := netip.MustParseAddr(got.IP)
					if ip != offered || got.Server != "10.66.0.2" {
						t.Fatalf("%s took %+v; want dnsmasq's offer of %s", tc.client, got, offered)
					}
					// We saw the client request its address from dnsmasq:
					// traffic from it is attributed to the host.
					if h, ok := leases.HostByIP(ip); !ok || h.Name != tc.host {
						t.Fatalf("leases.HostByIP(%s) = %v, %v; want %s", ip, h, ok, tc.host)
					}
				case "udhcpc":
					checkProxyPort(t, peer, offered, tc.mac, tc.wantFile)
				}
			}
			evs := b.events.find(tc.host, event.DHCPRequest, event.StageDHCP)
			if len(evs) == 0 || evs[0].Attr("client") != "firmware" || evs[0].Attr("mac") != tc.mac || evs[0].Attr("interface") != ns.BridgeDev {
				t.Fatalf("want dhcp.request events for %s (client firmware, mac, interface), got %+v", tc.host, evs)
			}
		})
	}
}

// TestDHCPUnknownMAC: a client the inventory does not know gets nothing,
// and the refusal is counted and emitted.
func TestDHCPUnknownMAC(t *testing.T) {
	testenv.RequireTools(t, "udhcpc", "tcpdump", "ip")
	harness.RequireNetns(t)
	for _, mode := range []string{config.DHCPFull, config.DHCPProxy} {
		t.Run(mode, func(t *testing.T) {
			ns := harness.NewNetns(t, harness.NetnsConfig{Part: "nbpxe", Bridge: bridgePrefix})
			b := newBootServers(t, ns, nil)
			b.startDHCP(t, mode, "http://10.66.0.1:8080")
			mac := "52:54:00:66:00:99"
			peer := ns.AddPeer(t, mac, netip.Prefix{})
			dir := harness.ArtifactDir(t)
			capture := startCapture(t, peer, dir)
			runUdhcpc(t, peer, dir, "PXEClient:Arch:00000:UNDI:002001", 0, udhcpcNoLease)
			pkts := capture.stop(t)
			if len(pkts) == 0 {
				t.Fatal("capture saw no DHCP packet at all: the test cannot judge")
			}
			if ours := fromServer(pkts, serverIP); len(ours) != 0 {
				t.Fatalf("unknown MAC got %d answers: %s", len(ours), describePackets(ours))
			}
			if n := counter(t, b.reg, "netboot_dhcp_ignored_total", map[string]string{"reason": "unknown MAC"}); n < 1 {
				t.Fatalf("netboot_dhcp_ignored_total{reason=unknown MAC} = %v, want ≥ 1", n)
			}
			if evs := b.events.find("unknown:"+mac, event.DHCPIgnored, event.StageNone); len(evs) == 0 || evs[0].Message != "unknown MAC" {
				t.Fatalf("want a dhcp.ignored event for the unknown MAC, got %+v", b.events.Events())
			}
		})
	}
}

// dnsmasqOffer returns the address the network's DHCP server (dnsmasq)
// offered in the capture, which must lie in its range.
func dnsmasqOffer(t *testing.T, pkts []dhcpPacket) netip.Addr {
	t.Helper()
	for _, p := range fromServer(pkts, netip.MustParseAddr("10.66.0.2")) {
		if p.Msg.MessageType() != dhcpv4.MessageTypeOffer {
			continue
		}
		ip, _ := netip.AddrFromSlice(p.Msg.YourIPAddr.To4())
		if ip.Compare(netip.MustParseAddr("10.66.0.100")) < 0 || ip.Compare(netip.MustParseAddr("10.66.0.150")) > 0 {
			t.Fatalf("dnsmasq offered %s, outside its range", ip)
		}
		return ip
	}
	t.Fatalf("no OFFER from dnsmasq in the capture: %s", describePackets(pkts))
	return netip.Addr{}
}

// TestDHCPOnlyNamedInterfaces: a server bound to another interface of the
// same namespace never answers (nor sees) a request on the bridge, even
// from a known host: DHCP serves only the interfaces the config names.
func TestDHCPOnlyNamedInterfaces(t *testing.T) {
	testenv.RequireTools(t, "udhcpc", "tcpdump", "ip")
	harness.RequireNetns(t)
	ns := harness.NewNetns(t, harness.NetnsConfig{Part: "nbpxe", Bridge: bridgePrefix})
	ns.IP(t, "link", "add", "nbbr1", "type", "bridge")
	ns.IP(t, "addr", "add", "10.67.0.1/24", "dev", "nbbr1")
	ns.IP(t, "link", "set", "nbbr1", "up")
	b := newBootServers(t, ns, nil)
	b.startDHCPOn(t, "nbbr1", config.DHCPFull, "http://10.66.0.1:8080")
	peer := ns.AddPeer(t, "52:54:00:66:00:20", netip.Prefix{}) // client1: known
	dir := harness.ArtifactDir(t)
	capture := startCapture(t, peer, dir)
	runUdhcpc(t, peer, dir, "PXEClient:Arch:00000:UNDI:002001", 0, udhcpcNoLease)
	pkts := capture.stop(t)
	if len(pkts) == 0 {
		t.Fatal("capture saw no DHCP packet at all: the test cannot judge")
	}
	if len(pkts) != len(fromClient(pkts)) {
		t.Fatalf("a server answered on an interface it is not bound to: %s", describePackets(pkts))
	}
	if n := counter(t, b.reg, "netboot_dhcp_packets_total", nil); n != 0 {
		t.Fatalf("the server bound to nbbr1 saw %v requests from the bridge", n)
	}
}

func fromClient(pkts []dhcpPacket) []dhcpPacket {
	var out []dhcpPacket
	for _, p := range pkts {
		if p.Msg.OpCode == dhcpv4.OpcodeBootRequest {
			out = append(out, p)
		}
	}
	return out
}

func hostIP(t *testing.T, cfg *config.Config, name string) string {
	h, ok := cfg.HostByName(name)
	if !ok {
		t.Fatalf("no host %s", name)
	}
	return h.IP
}

// checkBootReply: every answer of ours names the file, the TFTP server and
// our identifier.
func checkBootReply(t *testing.T, p dhcpPacket, file string) {
	t.Helper()
	m := p.Msg
	if m.BootFileName != file || !m.ServerIPAddr.Equal(serverIP.AsSlice()) || !m.ServerIdentifier().Equal(serverIP.AsSlice()) ||
		string(m.GetOneOption(dhcpv4.OptionTFTPServerName)) != serverIP.String() {
		t.Fatalf("reply lacks boot information (file %q, siaddr, 54, 66 = %s): %s", file, serverIP, m.Summary())
	}
}

// checkProxyPort sends the PXE ROM's second step, a REQUEST to port 4011
// from the address the client got, and expects an ACK with the boot file.
func checkProxyPort(t *testing.T, peer *harness.Peer, ip netip.Addr, mac, file string) {
	t.Helper()
	peer.IP(t, "addr", "add", ip.String()+"/24", "dev", "eth0")
	conn := peer.ListenPacket(t, "udp4", ip.String()+":68")
	hw, _ := net.ParseMAC(mac)
	req, err := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithClientIP(ip.AsSlice()),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0, 0}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.WriteTo(req.ToBytes(), &net.UDPAddr{IP: serverIP.AsSlice(), Port: 4011}); err != nil {
		t.Fatalf("send to 4011: %v", err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1500)
	n, from, err := conn.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no answer from port 4011: %v", err)
	}
	ack, err := dhcpv4.FromBytes(buf[:n])
	if err != nil || ack.MessageType() != dhcpv4.MessageTypeAck || ack.TransactionID != req.TransactionID {
		t.Fatalf("port 4011 answered %v (%v) from %s, want an ACK to our xid", ack, err, from)
	}
	checkBootReply(t, dhcpPacket{Msg: ack}, file)
}

// udhcpcScript records the environment of the "bound" event.
const udhcpcScript = `#!/bin/sh
[ "$1" = bound ] && env > "$(dirname "$0")/bound.env"
exit 0
`

// What a udhcpc run must end with.
const (
	udhcpcBound   = iota // a lease
	udhcpcNoLease        // no lease
	udhcpcAny            // not judged
)

// runUdhcpc runs busybox udhcpc once in the peer and returns what it bound.
func runUdhcpc(t *testing.T, peer *harness.Peer, dir, vendor string, arch uint16, want int) lease {
	t.Helper()
	script := filepath.Join(dir, "udhcpc.sh")
	if err := os.WriteFile(script, []byte(udhcpcScript), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := []string{"-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", script, "-V", vendor,
		"-x", fmt.Sprintf("0x5d:%04x", arch), "-O", "tftp", "-O", "bootfile"}
	if want != udhcpcBound {
		args[6] = "2"
	}
	out, err := peer.Command(ctx, "udhcpc", args...).CombinedOutput()
	os.WriteFile(filepath.Join(dir, "udhcpc.log"), out, 0o644)
	switch {
	case want == udhcpcAny:
		return lease{}
	case want == udhcpcNoLease && err == nil:
		t.Fatalf("udhcpc got a lease it should not have: %s", out)
	case want == udhcpcNoLease:
		return lease{}
	case err != nil:
		t.Fatalf("udhcpc: %v: %s", err, out)
	}
	env := readEnv(t, filepath.Join(dir, "bound.env"))
	return lease{IP: env["ip"], Server: env["serverid"], File: env["boot_file"]}
}

const dhclientConf = `option pxe-arch code 93 = unsigned integer 16;
send vendor-class-identifier "%s";
send pxe-arch %d;
request subnet-mask, routers;
initial-interval 1;
backoff-cutoff 2;
`

// runDhclient runs ISC dhclient in the foreground until it wrote a lease.
func runDhclient(t *testing.T, peer *harness.Peer, dir, vendor string, arch uint16) lease {
	t.Helper()
	conf := filepath.Join(dir, "dhclient.conf")
	leaseFile := filepath.Join(dir, "dhclient.leases")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(dhclientConf, vendor, arch)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := peer.Start(t, filepath.Join(dir, "dhclient.log"), "dhclient", "-d", "-1", "-v", "-cf", conf, "-lf", leaseFile,
		"-pf", filepath.Join(dir, "dhclient.pid"), "-sf", "/bin/true", "eth0")
	defer p.Stop()
	var text string
	// In proxy mode ISC dhclient often takes our address-less offer first,
	// and gets the real server's lease only after its own retry cycles:
	// 13 s to more than 60 s seen here. The wait ends as soon as it has one.
	deadline := time.Now().Add(150 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(leaseFile)
		if text = string(b); strings.Contains(text, "fixed-address") {
			break
		}
		if p.Exited() {
			log, _ := os.ReadFile(filepath.Join(dir, "dhclient.log"))
			t.Fatalf("dhclient exited without a lease: %s", log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	field := func(re string) string {
		m := regexp.MustCompile(re).FindStringSubmatch(text)
		if m == nil {
			return ""
		}
		return m[1]
	}
	if text == "" || !strings.Contains(text, "fixed-address") {
		t.Fatalf("dhclient wrote no lease within 60s")
	}
	return lease{IP: field(`fixed-address ([0-9.]+);`), Server: field(`option dhcp-server-identifier ([0-9.]+);`), File: field(`filename "([^"]*)";`)}
}

func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("client script output: %v", err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env
}

const dnsmasqConf = `port=0
interface=eth0
bind-interfaces
user=root
dhcp-range=10.66.0.100,10.66.0.150,255.255.255.0,1h
dhcp-leasefile=%s
log-dhcp
no-ping
`

// startDnsmasq runs dnsmasq as the network's own DHCP server (the case
// proxyDHCP exists for) in a peer namespace at 10.66.0.2.
func startDnsmasq(t *testing.T, ns *harness.Netns, logDir string) {
	t.Helper()
	peer := ns.AddPeer(t, "02:66:00:00:00:02", netip.MustParsePrefix("10.66.0.2/24"))
	dir := t.TempDir()
	conf := filepath.Join(dir, "dnsmasq.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(dnsmasqConf, filepath.Join(dir, "leases"))), 0o644); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(logDir, "dnsmasq.log")
	peer.Start(t, log, "dnsmasq", "-k", "--conf-file="+conf, "--log-facility=-")
	waitForLog(t, log, "DHCP, IP range")
}

func waitForLog(t *testing.T, path, text string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(path); strings.Contains(string(b), text) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(path)
	t.Fatalf("%s never said %q: %s", path, text, b)
}

// capture is tcpdump recording DHCP traffic on the peer's eth0.
type capture struct {
	proc *harness.Proc
	file string
}

func startCapture(t *testing.T, peer *harness.Peer, dir string) *capture {
	t.Helper()
	file := filepath.Join(dir, "dhcp.pcap")
	log := filepath.Join(dir, "tcpdump.log")
	p := peer.Start(t, log, "tcpdump", "-i", "eth0", "-n", "-U", "--immediate-mode", "-Z", "root", "-w", file,
		"udp port 67 or udp port 68 or udp port 4011")
	waitForLog(t, log, "listening on")
	return &capture{proc: p, file: file}
}

func (c *capture) stop(t *testing.T) []dhcpPacket {
	t.Helper()
	time.Sleep(300 * time.Millisecond) // let the last replies arrive
	c.proc.Signal(syscall.SIGINT)
	select {
	case <-c.proc.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("tcpdump did not stop")
	}
	pkts, err := readDHCPCapture(c.file)
	if err != nil {
		t.Fatal(err)
	}
	return pkts
}

func fromServer(pkts []dhcpPacket, ip netip.Addr) []dhcpPacket {
	var out []dhcpPacket
	for _, p := range pkts {
		if p.Src.Addr() == ip && p.Msg.OpCode == dhcpv4.OpcodeBootReply {
			out = append(out, p)
		}
	}
	return out
}

func describePackets(pkts []dhcpPacket) string {
	var b strings.Builder
	for _, p := range pkts {
		fmt.Fprintf(&b, "\n%s → %s %s yiaddr=%s file=%q", p.Src, p.Dst, p.Msg.MessageType(), p.Msg.YourIPAddr, p.Msg.BootFileName)
	}
	return b.String()
}

// counter sums the gathered values of a counter whose labels include want.
func counter(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
