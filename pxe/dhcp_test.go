package pxe

import (
	"bufio"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/event"
)

var update = flag.Bool("update", false, "rewrite golden files")

const dhcpTestConfig = `
server:
  address: 10.99.0.1
  artifact_root: /nonexistent
classes:
  rpi4: {arch: arm64, firmware: rpi, kernel: kernel8.img, initrd: initrd.img}
  x86: {arch: amd64, firmware: uefi, kernel: vmlinuz, initrd: initrd.img}
  arm: {arch: arm64, firmware: uefi, kernel: Image, initrd: initrd.img}
hosts:
  - {name: qemu, mac: "52:54:00:12:34:56", ip: 10.99.0.2, class: x86}
  - {name: cm4-01, mac: "dc:a6:32:01:36:c2", serial: d9780558, ip: 10.99.0.21, class: rpi4}
  - {name: cm4-02, serial: 3c1a7f02, ip: 10.99.0.22, class: rpi4}
  - {name: arm1, mac: "52:54:00:aa:00:01", ip: 10.99.0.31, class: arm}
  - {name: noip, mac: "52:54:00:aa:00:02", class: x86}
`

func testConfig(t testing.TB) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", t.TempDir(), []byte(dhcpTestConfig))
	if err != nil {
		t.Fatalf("parse test config: %v", err)
	}
	return cfg
}

// capturedRequests returns the client→server BOOTP payloads of
// testdata/dhcp-requests.hex (iPXE DISCOVER, REQUEST; udhcpc DISCOVER,
// REQUEST), captured from a QEMU run.
func capturedRequests(t testing.TB) [][]byte {
	t.Helper()
	f, err := os.Open("testdata/dhcp-requests.hex")
	if err != nil {
		t.Fatalf("open capture: %v", err)
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<16)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		b, err := hex.DecodeString(line)
		if err != nil {
			t.Fatalf("decode capture: %v", err)
		}
		out = append(out, b)
	}
	if len(out) != 4 {
		t.Fatalf("capture has %d packets, want 4", len(out))
	}
	return out
}

func parse(t testing.TB, b []byte) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.FromBytes(b)
	if err != nil {
		t.Fatalf("parse packet: %v", err)
	}
	return m
}

// piDiscover builds a Raspberry Pi 4 bootloader DISCOVER byte for byte
// from the option layout in the research notes: 53, 55, 93 = 0, 94 =
// 1.2.1, 97 = 0 + "RPi4" + board rev + MAC LSBs + serial (little endian),
// 60 = PXEClient:Arch:00000:UNDI:002001.
func piDiscover(mac net.HardwareAddr, serial uint32, withGUID bool) []byte {
	p := make([]byte, 236)
	p[0], p[1], p[2] = 1, 1, 6
	copy(p[4:8], []byte{0x26, 0xf3, 0x0a, 0x91})
	copy(p[28:34], mac)
	p = append(p, 0x63, 0x82, 0x53, 0x63)
	p = append(p, 53, 1, 1)
	p = append(p, 55, 14, 1, 3, 43, 60, 66, 67, 128, 129, 130, 131, 132, 133, 134, 135)
	p = append(p, 93, 2, 0, 0)
	p = append(p, 94, 3, 1, 2, 1)
	guid := make([]byte, 17)
	if withGUID {
		copy(guid[1:], []byte{'R', 'P', 'i', '4', 0x11, 0x31, 0x03, 0x00, mac[2], mac[3], mac[4], mac[5]})
	} else { // DHCP_OPTION97=0: the serial four times
		for i := 1; i < 17; i += 4 {
			le(guid[i:], serial)
		}
	}
	if withGUID {
		le(guid[13:], serial)
	}
	p = append(p, 97, 17)
	p = append(p, guid...)
	vc := "PXEClient:Arch:00000:UNDI:002001"
	p = append(p, 60, byte(len(vc)))
	p = append(p, vc...)
	return append(p, 255)
}

func le(b []byte, v uint32) { b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24) }

// variant rewrites a captured request: new MAC, options removed or set.
func variant(t testing.TB, b []byte, mac string, del []uint8, set map[uint8][]byte) []byte {
	t.Helper()
	m := parse(t, b)
	if mac != "" {
		hw, err := net.ParseMAC(mac)
		if err != nil {
			t.Fatal(err)
		}
		m.ClientHWAddr = hw
	}
	for _, c := range del {
		m.Options.Del(dhcpv4.GenericOptionCode(c))
	}
	for c, v := range set {
		m.UpdateOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(c), v))
	}
	return m.ToBytes()
}

func newTestServer(t testing.TB, mode string, proxyPort bool, sink event.Sink, reg prometheus.Registerer, opts ...func(*DHCPConfig)) *DHCPServer {
	t.Helper()
	cfg := testConfig(t)
	inv := NewInventory(cfg)
	dc := DHCPConfig{
		Mode: mode, ProxyPort: proxyPort, Interface: "nbpxe0", ServerIP: netip.MustParseAddr("10.99.0.1"),
		HTTPURL: "http://10.99.0.1:8080", Netmask: netip.MustParseAddr("255.255.255.0"),
		Router: netip.MustParseAddr("10.99.0.254"), DNS: []netip.Addr{netip.MustParseAddr("10.99.0.53")},
	}
	for _, o := range opts {
		o(&dc)
	}
	s, err := NewDHCP(dc, discardConn{}, DHCPDeps{Inventory: inv, Sink: sink, Registerer: reg,
		Clock: clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))})
	if err != nil {
		t.Fatalf("new dhcp: %v", err)
	}
	return s
}

// TestDHCPDecisions checks the answer to real and real-derived requests per
// client kind and mode against golden files (go test -update rewrites).
func TestDHCPDecisions(t *testing.T) {
	cap := capturedRequests(t)
	ipxeDisc, ipxeReq, udhcpDisc, udhcpReq := cap[0], cap[1], cap[2], cap[3]
	// A plain PXE ROM sends what iPXE sends minus its user class and 175.
	biosDisc := variant(t, ipxeDisc, "", []uint8{77, 175}, nil)
	uefiDisc := variant(t, biosDisc, "", nil, map[uint8][]byte{93: {0, 7}, 60: []byte("PXEClient:Arch:00007:UNDI:003016")})
	armDisc := variant(t, biosDisc, "52:54:00:aa:00:01", nil, map[uint8][]byte{93: {0, 11}, 60: []byte("PXEClient:Arch:00011:UNDI:003016")})
	httpDisc := variant(t, biosDisc, "", nil, map[uint8][]byte{93: {0, 16}, 60: []byte("HTTPClient:Arch:00016:UNDI:003016")})
	piMAC, _ := net.ParseMAC("dc:a6:32:01:36:c2")
	pi := piDiscover(piMAC, 0xd9780558, true)
	piUnknownMAC, _ := net.ParseMAC("dc:a6:32:99:99:99")
	piBySerial := piDiscover(piUnknownMAC, 0x3c1a7f02, true)
	piNoGUID := piDiscover(piMAC, 0xd9780558, false)
	piAsX86 := piDiscover(mustMAC("52:54:00:12:34:56"), 0x12345678, true)
	ipxeOnPi := variant(t, ipxeDisc, "dc:a6:32:01:36:c2", nil, nil)
	uefiOnArm := variant(t, uefiDisc, "52:54:00:aa:00:01", nil, nil)
	unknown := variant(t, ipxeDisc, "52:54:00:de:ad:00", nil, nil)
	noip := variant(t, biosDisc, "52:54:00:aa:00:02", nil, nil)
	wrongReq := variant(t, ipxeReq, "", nil, map[uint8][]byte{50: {10, 99, 0, 77}})
	otherServer := variant(t, ipxeReq, "", nil, map[uint8][]byte{54: {10, 99, 0, 9}})
	relayed := variant(t, biosDisc, "", nil, nil)
	{
		m := parse(t, relayed)
		m.GatewayIPAddr = net.IPv4(10, 98, 0, 1)
		relayed = m.ToBytes()
	}
	proxyReq := variant(t, biosDisc, "", nil, map[uint8][]byte{53: {3}})
	{
		m := parse(t, proxyReq)
		m.ClientIPAddr = net.IPv4(10, 99, 0, 2)
		proxyReq = m.ToBytes()
	}

	tests := []struct {
		name        string
		mode        string
		proxyPort   bool
		pkt         []byte
		unknownBoot bool
	}{
		{"full-ipxe-discover", config.DHCPFull, false, ipxeDisc, false},
		{"full-ipxe-request", config.DHCPFull, false, ipxeReq, false},
		{"full-udhcpc-discover", config.DHCPFull, false, udhcpDisc, false},
		{"full-udhcpc-request", config.DHCPFull, false, udhcpReq, false},
		{"full-bios-discover", config.DHCPFull, false, biosDisc, false},
		{"full-uefi-x64-discover", config.DHCPFull, false, uefiDisc, false},
		{"full-uefi-arm64-discover", config.DHCPFull, false, armDisc, false},
		{"full-http-boot-discover", config.DHCPFull, false, httpDisc, false},
		{"full-rpi-discover", config.DHCPFull, false, pi, false},
		{"full-rpi-by-serial", config.DHCPFull, false, piBySerial, false},
		{"full-rpi-option97-serial", config.DHCPFull, false, piNoGUID, false},
		{"full-request-wrong-ip", config.DHCPFull, false, wrongReq, false},
		{"full-request-other-server", config.DHCPFull, false, otherServer, false},
		{"full-relayed", config.DHCPFull, false, relayed, false},
		{"full-no-reservation", config.DHCPFull, false, noip, false},
		{"full-unknown-mac", config.DHCPFull, false, unknown, false},
		{"mismatch-rpi-guid-on-x86-host", config.DHCPFull, false, piAsX86, false},
		{"mismatch-ipxe-on-rpi-host", config.DHCPFull, false, ipxeOnPi, false},
		{"mismatch-x64-on-arm64-host", config.DHCPFull, false, uefiOnArm, false},
		{"proxy-ipxe-discover", config.DHCPProxy, false, ipxeDisc, false},
		{"proxy-ipxe-request", config.DHCPProxy, false, ipxeReq, false},
		{"proxy-bios-discover", config.DHCPProxy, false, biosDisc, false},
		{"proxy-rpi-discover", config.DHCPProxy, false, pi, false},
		{"proxy-udhcpc-discover", config.DHCPProxy, false, udhcpDisc, false},
		{"proxy-unknown-mac", config.DHCPProxy, false, unknown, false},
		{"proxy4011-request", config.DHCPProxy, true, proxyReq, false},
		{"proxy-unknown-boot-ipxe", config.DHCPProxy, false, unknown, true},
		{"proxy-unknown-boot-bios", config.DHCPProxy, false, variant(t, biosDisc, "52:54:00:de:ad:00", nil, nil), true},
		{"full-unknown-boot-is-ignored", config.DHCPFull, false, unknown, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var events []event.Event
			s := newTestServer(t, tc.mode, tc.proxyPort, event.SinkFunc(func(e event.Event) { events = append(events, e) }), nil,
				func(c *DHCPConfig) { c.UnknownBoot, c.DefaultClass = tc.unknownBoot, "x86" })
			req := parse(t, tc.pkt)
			d := s.decide(req, tc.proxyPort)
			s.record(req, d)
			got := describe(s, req, d, events)
			golden(t, filepath.Join("testdata", "dhcp-golden", tc.name+".txt"), got)
		})
	}
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// describe renders a dhcpDecision, its reply, destination and events as text.
func describe(s *DHCPServer, req *dhcpv4.DHCPv4, d dhcpDecision, events []event.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "client: kind=%s arch=%d pxe=%v pi_guid=%v serial=%q event_client=%s\n",
		d.client.Kind, d.client.Arch, d.client.PXE, d.client.PiGUID, d.client.Serial, d.client.EventClient())
	fmt.Fprintf(&b, "decision: host=%s result=%s reason=%q boot=%v file=%q ip=%s\n", d.host, d.result, d.reason, d.boot, d.file, addrString(d.ip))
	for _, e := range events {
		fmt.Fprintf(&b, "event: kind=%s host=%s stage=%s failed=%v message=%q\n", e.Kind, e.Host, e.Stage, e.Failed, e.Message)
		for _, k := range sortedKeys(e.Attrs) {
			fmt.Fprintf(&b, "  %s=%s\n", k, e.Attrs[k])
		}
	}
	if d.reply == nil {
		b.WriteString("reply: none\n")
		return b.String()
	}
	peer := &net.UDPAddr{IP: net.IPv4(10, 99, 0, 2), Port: 68}
	fmt.Fprintf(&b, "destination: %s\n", s.destination(req, d.reply, peer))
	fmt.Fprintf(&b, "reply bytes: %s\n", hex.EncodeToString(d.reply.ToBytes()))
	b.WriteString(d.reply.Summary())
	return b.String()
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// golden compares got with the file at path (rewritten with -update).
func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update): %v", err)
	}
	if string(want) != got {
		t.Errorf("%s differs (run with -update to accept):\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}

// TestRPiOption43Bytes pins option 43 to dnsmasq's 32 bytes.
func TestRPiOption43Bytes(t *testing.T) {
	want := "0601030a0400505845091400001152617370626572727920506920426f6f74ff"
	if got := hex.EncodeToString(raspberryPiOpt43); got != want || len(raspberryPiOpt43) != 32 {
		t.Fatalf("option 43 = %s (%d bytes), want %s (32 bytes)", got, len(raspberryPiOpt43), want)
	}
}

// TestDHCPUnknownMACCounted checks the ignore is visible in the metrics.
func TestDHCPUnknownMACCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := newTestServer(t, config.DHCPFull, false, nil, reg)
	pkt := variant(t, capturedRequests(t)[0], "52:54:00:de:ad:00", nil, nil)
	s.handle(pkt, &net.UDPAddr{IP: net.IPv4zero, Port: 68})
	s.handle(pkt, &net.UDPAddr{IP: net.IPv4zero, Port: 68})
	if got := testutil.ToFloat64(s.metrics.ignored.WithLabelValues("unknown MAC")); got != 2 {
		t.Fatalf("ignored{unknown MAC} = %v, want 2", got)
	}
	if got := testutil.ToFloat64(s.metrics.packets.WithLabelValues("discover", "ipxe", "ignored")); got != 2 {
		t.Fatalf("packets{discover,ipxe,ignored} = %v, want 2", got)
	}
}

// TestDHCPMalformedCounted feeds garbage: no reply, counted.
func TestDHCPMalformedCounted(t *testing.T) {
	s := newTestServer(t, config.DHCPFull, false, nil, nil)
	s.handle([]byte{1, 2, 3}, &net.UDPAddr{IP: net.IPv4zero, Port: 68})
	if got := testutil.ToFloat64(s.metrics.packets.WithLabelValues("malformed", "", "ignored")); got != 1 {
		t.Fatalf("malformed = %v, want 1", got)
	}
}

// TestLeasesRecordedFromACK checks full-mode ACKs and proxy-mode requests
// feed the IP→host map.
func TestLeasesRecordedFromACK(t *testing.T) {
	cap := capturedRequests(t)
	tests := []struct {
		name string
		mode string
		pkt  []byte
		ip   string
	}{
		{"full ack", config.DHCPFull, cap[1], "10.99.0.2"},
		{"proxy sees request to the other server", config.DHCPProxy, variant(t, cap[1], "", nil, map[uint8][]byte{50: {10, 99, 0, 120}}), "10.99.0.120"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, tc.mode, false, nil, nil)
			s.handle(tc.pkt, &net.UDPAddr{IP: net.IPv4zero, Port: 68})
			h, ok := s.leases.HostByIP(netip.MustParseAddr(tc.ip))
			if !ok || h.Name != "qemu" {
				t.Fatalf("HostByIP(%s) = %v, %v; want qemu", tc.ip, h, ok)
			}
		})
	}
}

// FuzzDHCPHandle feeds arbitrary datagrams to every mode's handler: it must
// never panic, and any reply it builds must parse back.
func FuzzDHCPHandle(f *testing.F) {
	for _, p := range capturedRequests(f) {
		f.Add(p)
	}
	f.Add(piDiscover(mustMAC("dc:a6:32:01:36:c2"), 0xd9780558, true))
	f.Add([]byte{})
	f.Add([]byte{1, 1, 6, 0})
	servers := []*DHCPServer{
		newTestServer(f, config.DHCPFull, false, nil, nil),
		newTestServer(f, config.DHCPProxy, false, nil, nil),
		newTestServer(f, config.DHCPProxy, true, nil, nil),
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for _, s := range servers {
			s.handle(pkt, &net.UDPAddr{IP: net.IPv4(10, 99, 0, 2), Port: 68})
			req, err := dhcpv4.FromBytes(pkt)
			if err != nil {
				continue
			}
			if d := s.decide(req, s.cfg.ProxyPort); d.reply != nil {
				if _, err := dhcpv4.FromBytes(d.reply.ToBytes()); err != nil {
					t.Fatalf("reply does not parse: %v", err)
				}
			}
		}
	})
}

// discardConn is a PacketConn whose writes vanish (dhcpDecision tests).
type discardConn struct{}

func (discardConn) ReadFrom([]byte) (int, net.Addr, error)    { return 0, nil, net.ErrClosed }
func (discardConn) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }
func (discardConn) Close() error                              { return nil }
func (discardConn) LocalAddr() net.Addr                       { return &net.UDPAddr{} }
func (discardConn) SetDeadline(time.Time) error               { return nil }
func (discardConn) SetReadDeadline(time.Time) error           { return nil }
func (discardConn) SetWriteDeadline(time.Time) error          { return nil }

// TestDHCPRechainIPXE walks an iPXE ROM through RechainIPXE: its own
// exchange (DISCOVER, REQUEST, retries: one xid) gets our binary; the
// chainloaded iPXE (new xid) gets the script; a boot after the window
// starts over.
func TestDHCPRechainIPXE(t *testing.T) {
	disc := parse(t, capturedRequests(t)[0])
	steps := []struct {
		xid     uint32
		advance time.Duration
		reason  string
		file    string
		client  string
	}{
		{xid: 1, reason: "rechain", file: "ipxe/undionly.kpxe", client: "firmware"},
		{xid: 1, advance: time.Second, reason: "rechain", file: "ipxe/undionly.kpxe", client: "firmware"},
		{xid: 2, advance: 5 * time.Second, reason: "ipxe-script", file: "http://10.99.0.1:8080/boot/qemu.ipxe", client: "ipxe"},
		{xid: 2, advance: time.Second, reason: "ipxe-script", file: "http://10.99.0.1:8080/boot/qemu.ipxe", client: "ipxe"},
		{xid: 3, advance: 3 * time.Minute, reason: "rechain", file: "ipxe/undionly.kpxe", client: "firmware"},
		{xid: 4, advance: time.Second, reason: "ipxe-script", file: "http://10.99.0.1:8080/boot/qemu.ipxe", client: "ipxe"},
	}
	clk := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	var last event.Event
	s, err := NewDHCP(DHCPConfig{Mode: config.DHCPFull, ServerIP: netip.MustParseAddr("10.99.0.1"), HTTPURL: "http://10.99.0.1:8080", RechainIPXE: true},
		discardConn{}, DHCPDeps{Inventory: NewInventory(testConfig(t)), Clock: clk, Sink: event.SinkFunc(func(e event.Event) { last = e })})
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range steps {
		clk.Advance(st.advance)
		req := parse(t, disc.ToBytes())
		req.TransactionID = dhcpv4.TransactionID{0, 0, 0, byte(st.xid)}
		d := s.decide(req, false)
		s.record(req, d)
		if d.reason != st.reason || d.file != st.file || last.Attr("client") != st.client {
			t.Fatalf("step %d (xid %d): reason %q file %q client %q; want %q %q %q", i, st.xid, d.reason, d.file, last.Attr("client"), st.reason, st.file, st.client)
		}
	}
}
