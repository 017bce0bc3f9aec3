package pxe

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"netboot/internal/config"
)

// dhcpDecision is what the DHCP server does with one request. It is
// computed without network I/O so that table tests can check it over real
// packets.
type dhcpDecision struct {
	client Client
	host   string // inventory name, or "unknown:<mac>"
	known  bool
	reply  *dhcpv4.DHCPv4 // nil: no answer
	// result is "replied" or "ignored"; reason says why (ignored) or what
	// was handed out (replied: chainload, ipxe-script, rpi, http-boot, lease).
	result string
	reason string
	// boot is true when the reply carries boot information (a boot file or
	// the Raspberry Pi menu), i.e. the request counts as the dhcp stage.
	boot bool
	file string     // boot file or URL handed out
	ip   netip.Addr // address leased (full) or requested from the other server (proxy)
	// quiet marks routine ignores (a request meant for another server, an
	// OS client in proxy mode): counted and debug-logged, no event.
	quiet bool
}

func dhcpIgnored(c Client, host, reason string) dhcpDecision {
	return dhcpDecision{client: c, host: host, result: "ignored", reason: reason}
}

// refuse turns d into a refusal, keeping whom it is about.
func refuse(d dhcpDecision, reason string) dhcpDecision {
	d.reply, d.boot, d.file, d.ip, d.result, d.reason = nil, false, "", netip.Addr{}, "ignored", reason
	return d
}

func dhcpQuiet(d dhcpDecision) dhcpDecision { d.quiet = true; return d }

// raspberryPiOpt43 is option 43 byte for byte as dnsmasq's
// pxe-service=0,"Raspberry Pi Boot" sends it: sub-option 6 = 3 (no
// broadcast/multicast discovery), 10 = menu prompt (timeout 0, "PXE"),
// 9 = boot menu (type 0, "Raspberry Pi Boot"), end. The Pi 4 bootloader
// ignores offers whose menu text differs.
var raspberryPiOpt43 = append(append([]byte{
	0x06, 0x01, 0x03,
	0x0a, 0x04, 0x00, 'P', 'X', 'E',
	0x09, 0x14, 0x00, 0x00, 0x11}, "Raspberry Pi Boot"...), 0xff)

// pxeBootFileOpt43 tells a PXE ROM to download the boot file of the offer
// without boot server discovery (sub-option 6 = 8).
var pxeBootFileOpt43 = []byte{0x06, 0x01, 0x08, 0xff}

// ipxeNoPXEDHCP is option 175 with sub-option 176 = 1: iPXE skips its
// ~3 s wait for a ProxyDHCP offer.
var ipxeNoPXEDHCP = []byte{0xb0, 0x01, 0x01, 0xff}

// decide computes the answer to req received on the DHCP port (proxyPort
// false) or the proxyDHCP port 4011 (proxyPort true).
func (s *DHCPServer) decide(req *dhcpv4.DHCPv4, proxyPort bool) dhcpDecision {
	c := DetectClient(req)
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return dhcpQuiet(dhcpIgnored(c, "", "not a BOOTREQUEST"))
	}
	if len(req.ClientHWAddr) != 6 {
		return dhcpQuiet(dhcpIgnored(c, "", "not an Ethernet client"))
	}
	h, known := s.lookup(req.ClientHWAddr, c)
	name := "unknown:" + req.ClientHWAddr.String()
	if known {
		name = h.Name
	}
	if !known && !(s.cfg.UnknownBoot && s.cfg.Mode == config.DHCPProxy) {
		if !c.Boots() && s.cfg.Mode == config.DHCPProxy {
			return dhcpQuiet(dhcpIgnored(c, name, "not a boot client"))
		}
		return dhcpIgnored(c, name, "unknown MAC")
	}
	if s.cfg.Mode == config.DHCPFull {
		return s.decideFull(req, c, h, name)
	}
	return s.decideProxy(req, c, h, name, proxyPort)
}

// lookup finds the host by MAC, or a Raspberry Pi by the serial in its GUID.
func (s *DHCPServer) lookup(mac net.HardwareAddr, c Client) (*config.Host, bool) {
	if h, ok := s.inv.ByMAC(mac); ok {
		return h, true
	}
	if c.Serial != "" {
		return s.inv.BySerial(c.Serial)
	}
	return nil, false
}

func (s *DHCPServer) decideProxy(req *dhcpv4.DHCPv4, c Client, h *config.Host, name string, proxyPort bool) dhcpDecision {
	d := dhcpDecision{client: c, host: name, known: h != nil}
	if !c.Boots() {
		return dhcpQuiet(dhcpIgnored(c, name, "not a boot client"))
	}
	mt := req.MessageType()
	switch {
	case !proxyPort && mt == dhcpv4.MessageTypeDiscover:
		d.reply = s.newReply(req, dhcpv4.MessageTypeOffer)
	case !proxyPort && mt == dhcpv4.MessageTypeRequest:
		// Meant for the other DHCP server; remember the address for
		// attribution.
		d = dhcpQuiet(dhcpIgnored(c, name, "request for the DHCP server"))
		d.known, d.ip = h != nil, requestedIP(req)
		return d
	case proxyPort && (mt == dhcpv4.MessageTypeRequest || mt == dhcpv4.MessageTypeInform):
		d.reply = s.newReply(req, dhcpv4.MessageTypeAck)
		d.ip = addrOf(req.ClientIPAddr)
	default:
		return dhcpQuiet(dhcpIgnored(c, name, fmt.Sprintf("%s is not answered in proxy mode", mt)))
	}
	d.reply.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
	return s.addBoot(d, req, c, h)
}

func (s *DHCPServer) decideFull(req *dhcpv4.DHCPv4, c Client, h *config.Host, name string) dhcpDecision {
	d := dhcpDecision{client: c, host: name, known: true}
	res, ok := h.Addr()
	if !ok {
		return dhcpIgnored(c, name, "no reserved ip for this host")
	}
	switch mt := req.MessageType(); mt {
	case dhcpv4.MessageTypeDiscover:
		d.reply = s.newReply(req, dhcpv4.MessageTypeOffer)
	case dhcpv4.MessageTypeRequest:
		if sid := req.ServerIdentifier(); sid != nil && !sid.IsUnspecified() && !sid.Equal(s.cfg.ServerIP.AsSlice()) {
			return dhcpQuiet(dhcpIgnored(c, name, "request for another server"))
		}
		want := requestedIP(req)
		if !want.IsValid() {
			want = addrOf(req.ClientIPAddr)
		}
		if want != res {
			d.reply = s.newReply(req, dhcpv4.MessageTypeNak)
			d.result, d.reason = "replied", fmt.Sprintf("nak: requested %s, reserved %s", want, res)
			return d
		}
		d.reply = s.newReply(req, dhcpv4.MessageTypeAck)
	case dhcpv4.MessageTypeInform:
		d.reply = s.newReply(req, dhcpv4.MessageTypeAck)
		d.ip = addrOf(req.ClientIPAddr)
		return s.addBootOrLease(d, req, c, h)
	default:
		d := dhcpIgnored(c, name, fmt.Sprintf("%s needs no answer", mt))
		if mt == dhcpv4.MessageTypeDecline {
			d.reason = "decline: the client says its reserved address is in use"
			return d
		}
		return dhcpQuiet(d)
	}
	d.ip = res
	d.reply.YourIPAddr = res.AsSlice()
	s.addLeaseOptions(d.reply)
	return s.addBootOrLease(d, req, c, h)
}

func (s *DHCPServer) addBootOrLease(d dhcpDecision, req *dhcpv4.DHCPv4, c Client, h *config.Host) dhcpDecision {
	if !c.Boots() {
		d.result, d.reason = "replied", "lease"
		return d
	}
	if c.PXE && c.Kind != ClientIPXE {
		d.reply.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
	}
	return s.addBoot(d, req, c, h)
}

// addLeaseOptions adds the subnet settings of a full-mode lease.
func (s *DHCPServer) addLeaseOptions(r *dhcpv4.DHCPv4) {
	r.UpdateOption(dhcpv4.OptIPAddressLeaseTime(s.cfg.LeaseTime))
	if s.cfg.Netmask.IsValid() {
		r.UpdateOption(dhcpv4.OptSubnetMask(net.IPMask(s.cfg.Netmask.AsSlice())))
	}
	if s.cfg.Router.IsValid() {
		r.UpdateOption(dhcpv4.OptRouter(s.cfg.Router.AsSlice()))
	}
	if len(s.cfg.DNS) > 0 {
		ips := make([]net.IP, len(s.cfg.DNS))
		for i, a := range s.cfg.DNS {
			ips[i] = a.AsSlice()
		}
		r.UpdateOption(dhcpv4.OptDNS(ips...))
	}
}

// addBoot adds what the client boots next, after checking that the host's
// class and the client agree (a Pi never gets x86 files, nor the reverse).
func (s *DHCPServer) addBoot(d dhcpDecision, req *dhcpv4.DHCPv4, c Client, h *config.Host) dhcpDecision {
	class, arch := s.classOf(h)
	kind := c.Kind
	if class.Firmware == config.FirmwareRPi {
		if kind != ClientRPi && kind != ClientBIOS {
			return refuse(d, fmt.Sprintf("firmware mismatch: class is rpi, client is %s", kind))
		}
		kind = ClientRPi
	} else if kind == ClientRPi {
		return refuse(d, fmt.Sprintf("firmware mismatch: Raspberry Pi GUID, class firmware is %q", class.Firmware))
	}
	if want := archOfKind(kind, c.Arch); want != "" && want != arch {
		return refuse(d, fmt.Sprintf("architecture mismatch: client is %s, host is %s", want, arch))
	}
	r := d.reply
	r.ServerIPAddr = s.cfg.ServerIP.AsSlice()
	r.UpdateOption(dhcpv4.OptTFTPServerName(s.cfg.ServerIP.String()))
	d.result, d.boot = "replied", true
	switch kind {
	case ClientRPi:
		r.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
		r.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, raspberryPiOpt43))
		d.reason = "rpi"
	case ClientIPXE:
		r.UpdateOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(optIPXEEncap), ipxeNoPXEDHCP))
		if fw := s.firmwareFile(ipxeRechainKind(c.Arch)); s.shouldRechain(req) && fw != "" {
			d.file, d.reason = fw, "rechain"
			break
		}
		d.file = s.scriptURL(d.host, h, req.ClientHWAddr)
		d.reason = "ipxe-script"
	case ClientHTTPX64, ClientHTTPARM64:
		d.file = strings.TrimRight(s.cfg.HTTPURL, "/") + "/files/" + s.firmwareFile(kind)
		r.UpdateOption(dhcpv4.OptClassIdentifier("HTTPClient"))
		d.reason = "http-boot"
	default:
		d.file = s.firmwareFile(kind)
		if d.file == "" {
			return refuse(d, fmt.Sprintf("no boot file for client arch %d", c.Arch))
		}
		if r.ClassIdentifier() == "PXEClient" {
			r.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, pxeBootFileOpt43))
		}
		d.reason = "chainload"
	}
	if req.GetOneOption(dhcpv4.OptionClientMachineIdentifier) != nil {
		r.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, req.GetOneOption(dhcpv4.OptionClientMachineIdentifier)))
	}
	if d.file != "" {
		r.BootFileName = d.file
		r.UpdateOption(dhcpv4.OptBootFileName(d.file))
	}
	return d
}

// ipxeRechain is the DHCP exchange in which an iPXE ROM got our binary.
type ipxeRechain struct {
	xid dhcpv4.TransactionID
	at  time.Time
}

// shouldRechain decides, with RechainIPXE, whether this iPXE request gets
// our iPXE binary: yes for the exchange (xid) that already got it, no for
// another exchange within the window (that is our iPXE), yes otherwise.
func (s *DHCPServer) shouldRechain(req *dhcpv4.DHCPv4) bool {
	if !s.cfg.RechainIPXE {
		return false
	}
	key, now := req.ClientHWAddr.String(), s.clock.Now()
	if prev, ok := s.rechained[key]; ok && now.Sub(prev.at) < s.cfg.RechainWindow {
		return prev.xid == req.TransactionID
	}
	for mac, r := range s.rechained { // forget old exchanges
		if now.Sub(r.at) >= s.cfg.RechainWindow {
			delete(s.rechained, mac)
		}
	}
	s.rechained[key] = ipxeRechain{xid: req.TransactionID, at: now}
	return true
}

// ipxeRechainKind is the firmware kind whose iPXE binary replaces an iPXE
// ROM of the given architecture.
func ipxeRechainKind(arch iana.Arch) ClientKind {
	switch arch {
	case iana.INTEL_X86PC:
		return ClientBIOS
	case iana.EFI_X86_64, iana.EFI_BC:
		return ClientUEFIX64
	case iana.EFI_ARM64:
		return ClientUEFIARM64
	case iana.EFI_IA32:
		return ClientUEFIIA32
	}
	return ""
}

// classOf returns the class and architecture a host boots; unknown hosts
// (unknown: boot) get the default class.
func (s *DHCPServer) classOf(h *config.Host) (config.Class, string) {
	if h == nil {
		cl := s.inv.Config().Classes[s.cfg.DefaultClass]
		return cl, cl.Arch
	}
	return s.inv.Class(h), h.Arch
}

// archOfKind is the CPU architecture a client kind implies ("" if none).
func archOfKind(k ClientKind, arch iana.Arch) string {
	switch k {
	case ClientBIOS, ClientUEFIIA32, ClientUEFIX64, ClientHTTPX64:
		return config.ArchAMD64
	case ClientUEFIARM64, ClientHTTPARM64, ClientRPi:
		return config.ArchARM64
	case ClientIPXE:
		switch arch {
		case 0, 6, 7, 9, 15, 16:
			return config.ArchAMD64
		case 11, 19:
			return config.ArchARM64
		}
	}
	return ""
}

// firmwareFile is the artifact-tree path of the iPXE binary for a kind.
func (s *DHCPServer) firmwareFile(k ClientKind) string {
	switch k {
	case ClientBIOS:
		return s.cfg.Files.BIOS
	case ClientUEFIX64, ClientHTTPX64:
		return s.cfg.Files.UEFIX64
	case ClientUEFIARM64, ClientHTTPARM64:
		return s.cfg.Files.UEFIARM64
	case ClientUEFIIA32:
		return s.cfg.Files.UEFIIA32
	}
	return ""
}

// scriptURL is where iPXE fetches the host's script; an unknown client
// (unknown: boot) is named by its MAC (see UnknownHostName).
func (s *DHCPServer) scriptURL(name string, h *config.Host, mac net.HardwareAddr) string {
	if h == nil {
		name = UnknownHostName(mac)
	}
	return strings.TrimRight(s.cfg.HTTPURL, "/") + "/boot/" + name + ".ipxe"
}

// UnknownHostName is the script name of a client the inventory does not
// know, when dhcp.unknown is "boot": "mac-" and its MAC with dashes.
func UnknownHostName(mac net.HardwareAddr) string {
	return "mac-" + strings.ReplaceAll(mac.String(), ":", "-")
}

// parseUnknownHostName is UnknownHostName's inverse.
func parseUnknownHostName(name string) (net.HardwareAddr, bool) {
	rest, ok := strings.CutPrefix(name, "mac-")
	if !ok {
		return nil, false
	}
	mac, err := net.ParseMAC(strings.ReplaceAll(rest, "-", ":"))
	if err != nil || len(mac) != 6 || UnknownHostName(mac) != name {
		return nil, false
	}
	return mac, true
}

// newReply starts a reply of type mt with our server identifier.
func (s *DHCPServer) newReply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	r, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithServerIP(net.IPv4zero),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP.AsSlice())))
	if err != nil { // only fails on a random-xid read, which a reply never does
		panic(fmt.Sprintf("build dhcp reply: %v", err))
	}
	return r
}

func requestedIP(req *dhcpv4.DHCPv4) netip.Addr {
	return addrOf(req.RequestedIPAddress())
}

func addrOf(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip.To4())
	if !ok || a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}
