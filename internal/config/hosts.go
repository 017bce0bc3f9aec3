package config

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"text/template"
)

// Architectures a host can have.
const (
	ArchAMD64 = "amd64"
	ArchARM64 = "arm64"
)

// Firmware kinds a class can boot with.
const (
	FirmwareBIOS = "bios" // x86 PXE ROM → iPXE (undionly.kpxe)
	FirmwareUEFI = "uefi" // UEFI PXE → iPXE EFI binary
	FirmwareRPi  = "rpi"  // Raspberry Pi 4/CM4 bootloader → TFTP files
)

// Class is what a group of identical hosts boots and how it is judged.
type Class struct {
	Arch     string `yaml:"arch"`     // amd64 or arm64; hosts may override
	Firmware string `yaml:"firmware"` // bios, uefi or rpi; informational for x86 (DHCP tells)
	// Dir is the class's directory under the artifact root. Default: the
	// class name. Pi firmware files and per-class kernels live there.
	Dir string `yaml:"dir"`
	// Kernel and Initrd are paths under Dir. Initrd "nbinit" means the image
	// netbootd assembles per host (see initramfs).
	Kernel string `yaml:"kernel"`
	Initrd string `yaml:"initrd"`
	// Cmdline is a text/template rendered per host; see README "Templates".
	Cmdline string `yaml:"cmdline"`
	// Variables are defaults for the host's variables.
	Variables map[string]string `yaml:"variables"`
	// Deadlines per stage name ("kernel-up": 60s): the time a boot may take
	// to reach that stage from the stage before it; a boot that does not is
	// stuck. See docs/boot-outcomes.md for the defaults.
	Deadlines map[string]Duration `yaml:"deadlines"`
	// Smoke checks run once a boot reaches userspace.
	Smoke []SmokeCheck `yaml:"smoke"`
}

// Host is one machine of the inventory.
type Host struct {
	Name   string `yaml:"name"`
	MAC    string `yaml:"mac"`
	Serial string `yaml:"serial"` // Raspberry Pi serial (8 hex digits), the TFTP prefix
	IP     string `yaml:"ip"`
	Class  string `yaml:"class"`
	Arch   string `yaml:"arch"` // default: the class's
	RBD    struct {
		Pool  string `yaml:"pool"`
		Image string `yaml:"image"`
	} `yaml:"rbd"`
	Variables map[string]string `yaml:"variables"`
}

// HardwareAddr returns the parsed MAC (valid after Load).
func (h *Host) HardwareAddr() net.HardwareAddr {
	mac, _ := net.ParseMAC(h.MAC)
	return mac
}

// Addr returns the host's configured IPv4 address, if any.
func (h *Host) Addr() (netip.Addr, bool) {
	a, err := netip.ParseAddr(h.IP)
	return a, err == nil
}

var (
	hostName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	piSerial = regexp.MustCompile(`^[0-9a-f]{8}$`)
)

func (c *Config) validateClasses(v *validator) {
	for name, cl := range c.Classes {
		s := v.at("classes." + name)
		if !hostName.MatchString(name) {
			s.errorf("class name %q must be lower-case letters, digits and dashes", name)
		}
		switch cl.Arch {
		case ArchAMD64, ArchARM64:
		default:
			s.at("arch").errorf("%q is not one of amd64, arm64", cl.Arch)
		}
		switch cl.Firmware {
		case "", FirmwareBIOS, FirmwareUEFI, FirmwareRPi:
		default:
			s.at("firmware").errorf("%q is not one of bios, uefi, rpi", cl.Firmware)
		}
		if cl.Firmware == FirmwareRPi && cl.Arch != ArchARM64 {
			s.at("arch").errorf("a Raspberry Pi class must be arm64")
		}
		if cl.Cmdline != "" {
			if _, err := template.New(name).Option("missingkey=error").Parse(cl.Cmdline); err != nil {
				s.at("cmdline").errorf("bad template: %v", err)
			}
		}
		for stage, d := range cl.Deadlines {
			if !validStageName(stage) {
				s.at("deadlines."+stage).errorf("%q is not a stage name", stage)
			}
			if d == 0 {
				s.at("deadlines." + stage).errorf("must be positive")
			}
		}
		for i := range cl.Smoke {
			cl.Smoke[i].validate(s.at(fmt.Sprintf("smoke[%d]", i)))
		}
	}
}

func (c *Config) validateHosts(v *validator) {
	names, macs, serials, ips := map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}
	for i := range c.Hosts {
		h := &c.Hosts[i]
		s := v.at(fmt.Sprintf("hosts[%d]", i))
		if !hostName.MatchString(h.Name) {
			s.at("name").errorf("%q must be lower-case letters, digits and dashes", h.Name)
		}
		dup(s.at("name"), names, h.Name, i)
		if h.MAC == "" && h.Serial == "" {
			s.errorf("needs a mac or a serial to be recognised")
		}
		if h.MAC != "" {
			mac, err := net.ParseMAC(h.MAC)
			if err != nil || len(mac) != 6 {
				s.at("mac").errorf("%q is not an Ethernet MAC address", h.MAC)
			} else {
				h.MAC = mac.String()
				dup(s.at("mac"), macs, h.MAC, i)
			}
		}
		if h.Serial != "" {
			h.Serial = strings.ToLower(h.Serial)
			if !piSerial.MatchString(h.Serial) {
				s.at("serial").errorf("%q is not a Raspberry Pi serial (8 hex digits)", h.Serial)
			}
			dup(s.at("serial"), serials, h.Serial, i)
		}
		if h.IP != "" {
			if !isIPv4(h.IP) {
				s.at("ip").errorf("%q is not an IPv4 address", h.IP)
			}
			dup(s.at("ip"), ips, h.IP, i)
		}
		cl, ok := c.Classes[h.Class]
		if !ok {
			s.at("class").errorf("unknown class %q", h.Class)
		}
		if h.Arch == "" {
			h.Arch = cl.Arch
		} else if h.Arch != ArchAMD64 && h.Arch != ArchARM64 {
			s.at("arch").errorf("%q is not one of amd64, arm64", h.Arch)
		}
		if (h.RBD.Pool == "") != (h.RBD.Image == "") {
			s.at("rbd").errorf("needs both pool and image, or neither")
		}
	}
}

func dup(s scope, seen map[string]int, key string, i int) {
	if key == "" {
		return
	}
	if j, ok := seen[key]; ok {
		s.errorf("%q is also used by hosts[%d]", key, j)
		return
	}
	seen[key] = i
}

func validStageName(name string) bool {
	switch name {
	case "dhcp", "firmware", "kernel", "initramfs", "kernel-up", "init", "network",
		"root-prepare", "root-map", "root-mount", "switch-root", "userspace", "ready":
		return true
	}
	return false
}

func isIPv4(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is4()
}

func (cl *Class) setDefaults() {}

// HostVariables merges class variables with host variables (host wins) and
// the built-ins name, mac, serial, ip, arch, class, pool, image.
func (c *Config) HostVariables(h *Host) map[string]string {
	out := map[string]string{}
	for k, v := range c.Classes[h.Class].Variables {
		out[k] = v
	}
	for k, v := range h.Variables {
		out[k] = v
	}
	for k, v := range map[string]string{
		"name": h.Name, "mac": h.MAC, "serial": h.Serial, "ip": h.IP, "arch": h.Arch,
		"class": h.Class, "pool": h.RBD.Pool, "image": h.RBD.Image, "server": c.Server.Address,
	} {
		out[k] = v
	}
	return out
}
