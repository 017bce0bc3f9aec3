package pxetest

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"

	"netboot/test/harness"
)

// TestRouterAdvertisements: a host on the bridge receives our router
// advertisement with the bridge's ULA /64 (autonomous) and router lifetime
// 0, unsolicited at start and again in answer to its router solicitation.
func TestRouterAdvertisements(t *testing.T) {
	harness.RequireNetns(t)
	ns := harness.NewNetns(t, harness.NetnsConfig{Part: "nbpxe", Bridge: bridgePrefix})
	peer := ns.AddPeer(t, "52:54:00:66:00:30", netip.Prefix{})
	conn := peer.ListenPacket(t, "ip6:ipv6-icmp", "::")
	b := newBootServers(t, ns, nil)
	b.startRA(t)
	if prefix := readRA(t, conn); prefix != "fd66::/64" {
		t.Fatalf("unsolicited RA prefix = %s, want the bridge's fd66::/64", prefix)
	}
	rs, err := (&icmp.Message{Type: ipv6.ICMPTypeRouterSolicitation, Body: &icmp.RawBody{Data: make([]byte, 4)}}).Marshal(nil)
	if err != nil {
		t.Fatal(err)
	}
	pc := ipv6.NewPacketConn(conn.(*net.IPConn))
	if err := pc.SetMulticastHopLimit(255); err != nil {
		t.Fatal(err)
	}
	var ifIndex int
	peer.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err == nil {
			ifIndex = ifi.Index
		}
		return err
	})
	// Until DAD gives eth0 its link-local address, sending fails.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		_, err := pc.WriteTo(rs, &ipv6.ControlMessage{HopLimit: 255, IfIndex: ifIndex}, &net.IPAddr{IP: net.ParseIP("ff02::2")})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("send router solicitation: %v", err)
		}
	}
	if prefix := readRA(t, conn); prefix != "fd66::/64" {
		t.Fatalf("solicited RA prefix = %s", prefix)
	}
	if n := counter(t, b.reg, "netboot_ipv6_router_adverts_total", map[string]string{"trigger": "solicited", "result": "sent"}); n < 1 {
		t.Fatalf("solicited advertisements counted: %v, want ≥ 1", n)
	}
}

// readRA waits for a router advertisement and returns its prefix option,
// checking the router lifetime is 0.
func readRA(t *testing.T, conn net.PacketConn) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	buf := make([]byte, 1500)
	for {
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no router advertisement: %v", err)
		}
		b := buf[:n]
		if len(b) < 16 || b[0] != byte(ipv6.ICMPTypeRouterAdvertisement) {
			continue
		}
		if lifetime := int(b[6])<<8 | int(b[7]); lifetime != 0 {
			t.Fatalf("router lifetime %d, want 0 (netbootd is not a router)", lifetime)
		}
		for opts := b[16:]; len(opts) >= 8 && opts[1] > 0; opts = opts[int(opts[1])*8:] {
			if opts[0] == 3 && len(opts) >= 32 && opts[3]&0x40 != 0 {
				a, _ := netip.AddrFromSlice(opts[16:32])
				return netip.PrefixFrom(a, int(opts[2])).String()
			}
			if int(opts[1])*8 > len(opts) {
				break
			}
		}
		t.Fatalf("RA without an autonomous prefix option: % x", b)
	}
}
