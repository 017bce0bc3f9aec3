package rbd

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Addr is a Ceph client address as Ceph prints it in `rbd lock ls`,
// `rbd status`, `osd blocklist ls` and /sys/bus/rbd/devices/N/client_addr:
// "ip:port/nonce" (IPv6 as "[ip]:port/nonce"). Clients show port 0; the
// nonce tells two instances (two boots) on one IP apart. Port 0 and nonce 0
// together ("ip:0/0") name every client of that IP: a whole-IP entry.
type Addr struct {
	IP    netip.Addr
	Port  uint16
	Nonce uint32
}

// ParseAddr parses "ip:port/nonce". A messenger prefix ("v1:", "v2:",
// "any:") and the brackets/commas of an address vector ("[v2:…,v1:…]", its
// first element is used) are accepted, as rados_getaddrs prints them.
func ParseAddr(s string) (Addr, error) {
	in := s
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") && strings.Count(s, "[") == strings.Count(s, "]") && looksLikeVector(s) {
		s = s[1 : len(s)-1]
		if i := strings.IndexByte(s, ','); i >= 0 {
			s = s[:i]
		}
	}
	s = trimMessenger(s)
	slash := strings.LastIndexByte(s, '/')
	if slash < 0 {
		return Addr{}, fmt.Errorf("parse ceph address %q: no /nonce", in)
	}
	nonce, err := strconv.ParseUint(s[slash+1:], 10, 32)
	if err != nil {
		return Addr{}, fmt.Errorf("parse ceph address %q: bad nonce: %w", in, err)
	}
	ap, err := netip.ParseAddrPort(s[:slash])
	if err != nil {
		return Addr{}, fmt.Errorf("parse ceph address %q: %w", in, err)
	}
	if ap.Addr().Zone() != "" {
		return Addr{}, fmt.Errorf("parse ceph address %q: zones are not supported", in)
	}
	return Addr{IP: ap.Addr().Unmap(), Port: ap.Port(), Nonce: uint32(nonce)}, nil
}

// looksLikeVector tells "[v2:1.2.3.4:0/1,v1:…]" from "[::1]:0/1".
func looksLikeVector(s string) bool {
	inner := s[1 : len(s)-1]
	return strings.HasPrefix(inner, "v1:") || strings.HasPrefix(inner, "v2:") || strings.HasPrefix(inner, "any:")
}

func trimMessenger(s string) string {
	for _, p := range []string{"v1:", "v2:", "any:"} {
		if strings.HasPrefix(s, p) {
			return s[len(p):]
		}
	}
	return s
}

// MustParseAddr is ParseAddr for constants in tests; it panics on error.
func MustParseAddr(s string) Addr {
	a, err := ParseAddr(s)
	if err != nil {
		panic(err)
	}
	return a
}

// String formats the address the way Ceph does: "ip:port/nonce".
func (a Addr) String() string {
	if !a.IP.IsValid() {
		return ""
	}
	return netip.AddrPortFrom(a.IP, a.Port).String() + "/" + strconv.FormatUint(uint64(a.Nonce), 10)
}

// IsZero reports whether a is the zero Addr (no address).
func (a Addr) IsZero() bool { return a == Addr{} }

// IsWholeIP reports whether a is "ip:0/0", the form that blocklists every
// client of that IP.
func (a Addr) IsWholeIP() bool { return a.IP.IsValid() && a.Port == 0 && a.Nonce == 0 }

// WholeIP returns the whole-IP address "ip:0/0" for ip.
func WholeIP(ip netip.Addr) Addr { return Addr{IP: ip.Unmap()} }

// MarshalText implements encoding.TextMarshaler.
func (a Addr) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; "" is the zero Addr.
func (a *Addr) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*a = Addr{}
		return nil
	}
	v, err := ParseAddr(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// ParseRange parses a CIDR blocklist range as `osd blocklist ls` prints it
// ("cidr:127.0.0.0:0/31", i.e. the network address with port 0 and the
// prefix length in the nonce position) or as an operator writes it
// ("127.0.0.0/31").
func ParseRange(s string) (netip.Prefix, error) {
	in := s
	s = strings.TrimPrefix(strings.TrimSpace(s), "cidr:")
	s = trimMessenger(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("parse blocklist range %q: %w", in, err)
	}
	p, err := a.IP.Prefix(int(a.Nonce))
	if err != nil || int(a.Nonce) > a.IP.BitLen() {
		return netip.Prefix{}, fmt.Errorf("parse blocklist range %q: prefix length %d out of range", in, a.Nonce)
	}
	return p, nil
}
