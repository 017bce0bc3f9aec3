package pxe

import (
	"bytes"
	"encoding/hex"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// ClientKind is what sent a DHCP request: which firmware or bootloader,
// deciding which file (if any) it may be given.
type ClientKind string

// The client kinds netbootd tells apart.
const (
	ClientBIOS      ClientKind = "bios"       // x86 PXE ROM (arch 0) → undionly.kpxe
	ClientUEFIIA32  ClientKind = "uefi-ia32"  // 32-bit x86 UEFI (arch 6)
	ClientUEFIX64   ClientKind = "uefi-x64"   // x86-64 UEFI (arch 7, 9) → iPXE EFI
	ClientUEFIARM64 ClientKind = "uefi-arm64" // ARM64 UEFI (arch 11) → iPXE ARM64 EFI
	ClientHTTPX64   ClientKind = "http-x64"   // x86-64 UEFI HTTP boot (arch 16)
	ClientHTTPARM64 ClientKind = "http-arm64" // ARM64 UEFI HTTP boot (arch 19)
	ClientRPi       ClientKind = "rpi"        // Raspberry Pi 4/CM4 bootloader
	ClientIPXE      ClientKind = "ipxe"       // iPXE (any platform) → the host's script
	ClientOS        ClientKind = "os"         // an operating system's DHCP client (udhcpc, dhclient)
	ClientUnknownFW ClientKind = "unknown-firmware"
)

// Client is what DetectClient learnt from one request.
type Client struct {
	Kind ClientKind
	// Arch is the first option 93 value (0 when absent).
	Arch iana.Arch
	// HasArch is true when option 93 was present.
	HasArch bool
	// PXE is true when option 60 starts with PXEClient or HTTPClient.
	PXE bool
	// VendorClass is option 60 as sent.
	VendorClass string
	// PiGUID is true when option 97 carries the Raspberry Pi "RPi4" FourCC.
	PiGUID bool
	// Serial is the Raspberry Pi serial (8 hex digits) from option 97's
	// last four bytes, when PiGUID.
	Serial string
}

// EventClient is the coarse "client" attribute of DHCP events that the
// boot tracker uses: "firmware" (a PXE ROM or UEFI), "ipxe", "rpi" or "os".
func (c Client) EventClient() string {
	switch c.Kind {
	case ClientIPXE:
		return "ipxe"
	case ClientRPi:
		return "rpi"
	case ClientOS:
		return "os"
	default:
		return "firmware"
	}
}

// Boots reports whether the client is a boot firmware or bootloader that
// asks for a file (as opposed to an OS that only wants an address).
func (c Client) Boots() bool { return c.Kind != ClientOS }

// rpiFourCC is "RPi4" as the Pi 4 bootloader stores it in option 97:
// the little-endian uint32 0x34695052.
var rpiFourCC = []byte{'R', 'P', 'i', '4'}

// ipxeUserClass is option 77 as iPXE sends it: the raw string, without the
// RFC 3004 length prefix.
const ipxeUserClass = "iPXE"

// optIPXEEncap is option 175, iPXE's encapsulated options.
const optIPXEEncap = 175

// DetectClient classifies a DHCP request from its options 93, 60, 77, 175
// and 97. A Raspberry Pi sends arch 0 like an x86 BIOS ROM; only its option
// 97 GUID tells them apart, and callers must in addition check the host's
// configured class (see decide).
func DetectClient(m *dhcpv4.DHCPv4) Client {
	c := Client{VendorClass: m.ClassIdentifier()}
	c.PXE = strings.HasPrefix(c.VendorClass, "PXEClient") || strings.HasPrefix(c.VendorClass, "HTTPClient")
	if archs := m.ClientArch(); len(archs) > 0 {
		c.Arch, c.HasArch = archs[0], true
	}
	c.PiGUID, c.Serial = piGUID(m.GetOneOption(dhcpv4.OptionClientMachineIdentifier))
	c.Kind = kindOf(m, c)
	return c
}

func kindOf(m *dhcpv4.DHCPv4, c Client) ClientKind {
	switch {
	case isIPXE(m):
		return ClientIPXE
	case c.PiGUID:
		return ClientRPi
	case !c.PXE && !c.HasArch:
		return ClientOS
	}
	switch c.Arch {
	case iana.INTEL_X86PC:
		return ClientBIOS
	case iana.EFI_IA32:
		return ClientUEFIIA32
	case iana.EFI_X86_64, iana.EFI_BC:
		return ClientUEFIX64
	case iana.EFI_ARM64:
		return ClientUEFIARM64
	case iana.EFI_X86_64_HTTP:
		return ClientHTTPX64
	case iana.EFI_ARM64_HTTP:
		return ClientHTTPARM64
	}
	return ClientUnknownFW
}

// isIPXE is true for iPXE's user class (raw "iPXE", or RFC 3004-encoded)
// or its option 175.
func isIPXE(m *dhcpv4.DHCPv4) bool {
	if len(m.GetOneOption(dhcpv4.GenericOptionCode(optIPXEEncap))) > 0 {
		return true
	}
	raw := m.GetOneOption(dhcpv4.OptionUserClassInformation)
	if string(raw) == ipxeUserClass {
		return true
	}
	for _, uc := range m.UserClass() {
		if uc == ipxeUserClass {
			return true
		}
	}
	return false
}

// piGUID reads option 97 (type byte 0 + 16-byte GUID). The Pi 4 bootloader
// puts the FourCC "RPi4" first and its serial number last (little endian).
func piGUID(opt []byte) (bool, string) {
	if len(opt) != 17 || opt[0] != 0 || !bytes.Equal(opt[1:5], rpiFourCC) {
		return false, ""
	}
	s := opt[13:17]
	return true, hex.EncodeToString([]byte{s[3], s[2], s[1], s[0]})
}
