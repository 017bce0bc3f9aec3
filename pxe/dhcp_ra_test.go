package pxe

import (
	"encoding/hex"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// TestRouterAdvertisement checks the message byte for byte and that x/net
// parses it as a router advertisement.
func TestRouterAdvertisement(t *testing.T) {
	mac, _ := net.ParseMAC("02:66:00:00:00:01")
	b := RouterAdvertisement(netip.MustParsePrefix("fd66::1/64"), mac)
	want := "8600000040000000000000000000000003044" + "0c0" + "00000e1000000708" + "00000000" + "fd660000000000000000000000000000" + "01010266" + "00000001"
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("RA = %s\nwant %s", got, want)
	}
	m, err := icmp.ParseMessage(58, b)
	if err != nil || m.Type != ipv6.ICMPTypeRouterAdvertisement {
		t.Fatalf("parse RA: %v, %v", m, err)
	}
}
