package netconsole

import (
	"net/netip"
	"sync"
)

// Resolver maps a datagram's source address to an inventory host name.
// Implementations must be safe for concurrent use; the server caches
// answers for Config.ResolveTTL.
type Resolver interface {
	HostForIP(ip netip.Addr) (host string, ok bool)
}

// ResolverFunc adapts a function to a Resolver.
type ResolverFunc func(netip.Addr) (string, bool)

// HostForIP calls f(ip).
func (f ResolverFunc) HostForIP(ip netip.Addr) (string, bool) { return f(ip) }

// ResolverChain asks each resolver in turn (inventory, DHCP leases, API
// callers) and returns the first answer.
type ResolverChain []Resolver

// HostForIP returns the first known answer.
func (c ResolverChain) HostForIP(ip netip.Addr) (string, bool) {
	for _, r := range c {
		if r == nil {
			continue
		}
		if h, ok := r.HostForIP(ip); ok {
			return h, true
		}
	}
	return "", false
}

// SeenAddrs remembers addresses learned at run time (API callers, leases
// reported by other parts). The zero value is ready to use.
type SeenAddrs struct {
	mu sync.RWMutex
	m  map[netip.Addr]string
}

// See records that ip belongs to host.
func (s *SeenAddrs) See(ip netip.Addr, host string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[netip.Addr]string{}
	}
	s.m[ip.Unmap()] = host
}

// HostForIP implements Resolver.
func (s *SeenAddrs) HostForIP(ip netip.Addr) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	h, ok := s.m[ip.Unmap()]
	return h, ok
}

const unknownPrefix = "unknown:"

// UnknownHost is the host name given to datagrams from unknown sources.
func UnknownHost(ip netip.Addr) string { return unknownPrefix + ip.Unmap().String() }
