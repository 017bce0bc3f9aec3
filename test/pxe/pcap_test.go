package pxetest

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// dhcpPacket is one DHCP message captured on the wire.
type dhcpPacket struct {
	Src, Dst netip.AddrPort
	Msg      *dhcpv4.DHCPv4
}

// readDHCPCapture reads a classic pcap file (Ethernet link type) written by
// tcpdump and returns its IPv4/UDP DHCP messages.
func readDHCPCapture(path string) ([]dhcpPacket, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read capture: %w", err)
	}
	if len(data) < 24 {
		return nil, fmt.Errorf("read capture %s: %d bytes, no pcap header", path, len(data))
	}
	var bo binary.ByteOrder
	switch binary.LittleEndian.Uint32(data) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		bo = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		bo = binary.BigEndian
	default:
		return nil, fmt.Errorf("read capture %s: not a pcap file", path)
	}
	if lt := bo.Uint32(data[20:]); lt != 1 {
		return nil, fmt.Errorf("read capture %s: link type %d, want Ethernet", path, lt)
	}
	var out []dhcpPacket
	for off := 24; off+16 <= len(data); {
		n := int(bo.Uint32(data[off+8:]))
		off += 16
		if off+n > len(data) {
			break
		}
		if p, ok := parseFrame(data[off : off+n]); ok {
			out = append(out, p)
		}
		off += n
	}
	return out, nil
}

func parseFrame(f []byte) (dhcpPacket, bool) {
	if len(f) < 14+20+8 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
		return dhcpPacket{}, false
	}
	ip := f[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[9] != 17 || len(ip) < ihl+8 {
		return dhcpPacket{}, false
	}
	src, _ := netip.AddrFromSlice(ip[12:16])
	dst, _ := netip.AddrFromSlice(ip[16:20])
	udp := ip[ihl:]
	sport, dport := binary.BigEndian.Uint16(udp), binary.BigEndian.Uint16(udp[2:])
	m, err := dhcpv4.FromBytes(udp[8:])
	if err != nil {
		return dhcpPacket{}, false
	}
	return dhcpPacket{Src: netip.AddrPortFrom(src, sport), Dst: netip.AddrPortFrom(dst, dport), Msg: m}, true
}
