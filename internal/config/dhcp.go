package config

import "fmt"

// DHCP modes.
const (
	DHCPOff   = "off"   // no DHCP at all (default): another server does everything
	DHCPProxy = "proxy" // proxyDHCP on 67 and 4011 beside an existing DHCP server
	DHCPFull  = "full"  // full DHCP: leases only to configured hosts (reservations)
)

// DHCP configures the DHCP/proxyDHCP server. It serves only on the
// interfaces listed; with none listed it does not run at all, so that the
// example configuration is safe on any machine.
type DHCP struct {
	Mode       string   `yaml:"mode"`
	Interfaces []string `yaml:"interfaces"`
	// Unknown says what to do with MACs that are not in the inventory:
	// "ignore" (default: log, count, no reply) or "boot" (proxy mode only:
	// answer them with the default class, for discovery).
	Unknown string `yaml:"unknown"`
	// DefaultClass is the class unknown clients get with unknown: boot.
	DefaultClass string `yaml:"default_class"`
	// Full mode: subnet settings handed out with reservations.
	Netmask    string   `yaml:"netmask"`
	Router     string   `yaml:"router"`
	DNS        []string `yaml:"dns"`
	LeaseTime  Duration `yaml:"lease_time"`  // default 1h
	ServerPort int      `yaml:"server_port"` // default 67; tests use others
	ProxyPort  int      `yaml:"proxy_port"`  // default 4011
	// RouterAdvert sends IPv6 router advertisements on the interfaces so
	// that iPXE does not wait ~13s for IPv6 autoconfiguration. Default off.
	RouterAdvert bool `yaml:"router_advert"`
	// IPXERechain hands our iPXE binary, once per boot, to iPXE clients we
	// did not chainload (NIC ROMs with an old or foreign iPXE). Default off.
	IPXERechain bool `yaml:"ipxe_rechain"`
}

func (d *DHCP) validate(v scope, c *Config) {
	switch d.Mode {
	case "", DHCPOff, DHCPProxy, DHCPFull:
	default:
		v.at("mode").errorf("%q is not one of off, proxy, full", d.Mode)
	}
	if (d.Mode == DHCPProxy || d.Mode == DHCPFull) && len(d.Interfaces) == 0 {
		v.at("interfaces").errorf("mode %s needs at least one interface: DHCP is never served on an interface the config does not name", d.Mode)
	}
	switch d.Unknown {
	case "", "ignore":
	case "boot":
		if d.Mode == DHCPFull {
			v.at("unknown").errorf("\"boot\" is only allowed in proxy mode: full mode hands out leases only to known hosts")
		}
		if _, ok := c.Classes[d.DefaultClass]; !ok {
			v.at("default_class").errorf("unknown: boot needs an existing default_class, got %q", d.DefaultClass)
		}
	default:
		v.at("unknown").errorf("%q is not one of ignore, boot", d.Unknown)
	}
	if d.Mode == DHCPFull && d.Netmask == "" {
		v.at("netmask").errorf("is required in full mode")
	}
	for i, ip := range d.DNS {
		if !isIPv4(ip) {
			v.at(fmt.Sprintf("dns[%d]", i)).errorf("%q is not an IPv4 address", ip)
		}
	}
	for field, ip := range map[string]string{"netmask": d.Netmask, "router": d.Router} {
		if ip != "" && !isIPv4(ip) {
			v.at(field).errorf("%q is not an IPv4 address", ip)
		}
	}
}

func (d *DHCP) setDefaults() {
	if d.Mode == "" {
		d.Mode = DHCPOff
	}
	if d.Unknown == "" {
		d.Unknown = "ignore"
	}
	if d.LeaseTime == 0 {
		d.LeaseTime = Duration(3600e9)
	}
	if d.ServerPort == 0 {
		d.ServerPort = 67
	}
	if d.ProxyPort == 0 {
		d.ProxyPort = 4011
	}
}
