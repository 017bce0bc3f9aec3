package pxe

import (
	"net"
	"net/netip"
	"strings"
	"sync"

	"netboot/internal/config"
)

// Inventory finds configured hosts by the identities DHCP and HTTP see.
type Inventory struct {
	cfg      *config.Config
	byMAC    map[string]*config.Host
	bySerial map[string]*config.Host
	byIP     map[netip.Addr]*config.Host
}

// NewInventory indexes cfg's hosts. cfg must have been loaded (validated).
func NewInventory(cfg *config.Config) *Inventory {
	inv := &Inventory{cfg: cfg, byMAC: map[string]*config.Host{}, bySerial: map[string]*config.Host{}, byIP: map[netip.Addr]*config.Host{}}
	for i := range cfg.Hosts {
		h := &cfg.Hosts[i]
		if mac, err := net.ParseMAC(h.MAC); err == nil {
			inv.byMAC[mac.String()] = h
		}
		if h.Serial != "" {
			inv.bySerial[strings.ToLower(h.Serial)] = h
		}
		if a, ok := h.Addr(); ok {
			inv.byIP[a] = h
		}
	}
	return inv
}

// Config returns the configuration the inventory was built from.
func (inv *Inventory) Config() *config.Config { return inv.cfg }

// ByMAC returns the host with hardware address mac.
func (inv *Inventory) ByMAC(mac net.HardwareAddr) (*config.Host, bool) {
	h, ok := inv.byMAC[mac.String()]
	return h, ok
}

// BySerial returns the Raspberry Pi with the given serial (8 hex digits).
func (inv *Inventory) BySerial(serial string) (*config.Host, bool) {
	h, ok := inv.bySerial[strings.ToLower(serial)]
	return h, ok
}

// ByName returns the host called name.
func (inv *Inventory) ByName(name string) (*config.Host, bool) { return inv.cfg.HostByName(name) }

// Class returns the class of h.
func (inv *Inventory) Class(h *config.Host) config.Class { return inv.cfg.ClassOf(h) }

// Leases maps IPv4 addresses to inventory host names, for attributing
// TFTP, HTTP and netconsole traffic to hosts. It knows the addresses the
// config reserves and the addresses DHCP saw hosts take (full-mode ACKs,
// and in proxy mode the address a host requests from the other server).
// Safe for concurrent use.
type Leases struct {
	inv  *Inventory
	mu   sync.RWMutex
	seen map[netip.Addr]string
}

// NewLeases returns a lease map backed by inv's configured addresses;
// inv may be nil (no inventory: nothing is ever found).
func NewLeases(inv *Inventory) *Leases {
	if inv == nil {
		inv = NewInventory(&config.Config{})
	}
	return &Leases{inv: inv, seen: map[netip.Addr]string{}}
}

// HostByIP returns the host that uses ip: the last one DHCP saw take it,
// else the one the config reserves it for. It implements HostLookup.
func (l *Leases) HostByIP(ip netip.Addr) (*config.Host, bool) {
	ip = ip.Unmap()
	l.mu.RLock()
	name, ok := l.seen[ip]
	l.mu.RUnlock()
	if l.inv == nil {
		return nil, false
	}
	if ok {
		if h, found := l.inv.ByName(name); found {
			return h, true
		}
	}
	h, ok := l.inv.byIP[ip]
	return h, ok
}

// Record notes that host uses ip. Invalid or unspecified addresses are
// ignored.
func (l *Leases) Record(ip netip.Addr, host string) {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsUnspecified() || host == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for a, h := range l.seen {
		if h == host && a != ip {
			delete(l.seen, a)
		}
	}
	l.seen[ip] = host
}
