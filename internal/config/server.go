package config

import (
	"net"
	"net/netip"
	"path/filepath"
)

// Server holds the settings shared by every listener.
type Server struct {
	// Address is the IPv4 address clients use to reach netbootd: the TFTP
	// server in DHCP replies and the host part of HTTP URLs. Default:
	// 127.0.0.1 (safe anywhere; set it to the boot network's address).
	Address string `yaml:"address"`
	// ArtifactRoot is the artifact tree served over TFTP and HTTP (see
	// images/README.md). Relative to the config file. Required.
	ArtifactRoot string `yaml:"artifact_root"`
	// APIToken is the bearer token that mutating API calls must carry.
	// Empty disables mutating calls from anything but hosts' own addresses.
	APIToken string `yaml:"api_token"`
	// LogLevel is debug, info (default), warn or error.
	LogLevel string `yaml:"log_level"`
}

func (s *Server) validate(v scope) {
	if s.Address != "" {
		if a, err := netip.ParseAddr(s.Address); err != nil || !a.Is4() {
			v.at("address").errorf("%q is not an IPv4 address", s.Address)
		}
	}
	if s.ArtifactRoot == "" {
		v.at("artifact_root").errorf("is required")
	}
	switch s.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		v.at("log_level").errorf("%q is not one of debug, info, warn, error", s.LogLevel)
	}
}

func (s *Server) setDefaults() {
	if s.Address == "" {
		s.Address = "127.0.0.1"
	}
	if s.LogLevel == "" {
		s.LogLevel = "info"
	}
}

// TFTP configures the read-only TFTP server.
type TFTP struct {
	// Listen is the UDP address. Default 127.0.0.1:69; "off" disables TFTP.
	Listen string `yaml:"listen"`
	// BlockSizeMax caps the negotiated blksize. Default 1468 (Ethernet MTU).
	BlockSizeMax int `yaml:"block_size_max"`
	// Timeout is the retransmit timeout. Default 2s: never below 1s, since
	// early retransmits hang the Raspberry Pi's start4.elf.
	Timeout Duration `yaml:"timeout"`
	// Retries before a transfer is given up. Default 5.
	Retries int `yaml:"retries"`
}

func (t *TFTP) validate(v scope) {
	validateListen(v.at("listen"), t.Listen)
	if t.BlockSizeMax != 0 && (t.BlockSizeMax < 512 || t.BlockSizeMax > 65464) {
		v.at("block_size_max").errorf("%d is outside 512..65464", t.BlockSizeMax)
	}
	if t.Timeout != 0 && t.Timeout.D() < 1e9 {
		v.at("timeout").errorf("%s is below 1s; early retransmits hang the Raspberry Pi firmware", t.Timeout)
	}
	if t.Retries < 0 {
		v.at("retries").errorf("must not be negative")
	}
}

func (t *TFTP) setDefaults() {
	if t.Listen == "" {
		t.Listen = "127.0.0.1:69"
	}
	if t.BlockSizeMax == 0 {
		t.BlockSizeMax = 1468
	}
	if t.Timeout == 0 {
		t.Timeout = Duration(2e9)
	}
	if t.Retries == 0 {
		t.Retries = 5
	}
}

// HTTP configures the one HTTP listener: artifacts, iPXE scripts, the API,
// /metrics and the dashboard.
type HTTP struct {
	// Listen is the TCP address. Default 127.0.0.1:8080.
	Listen string `yaml:"listen"`
	// PublicURL is the base URL hosts use; default http://<server.address>:<port>.
	PublicURL string `yaml:"public_url"`
}

func (h *HTTP) validate(v scope) {
	if h.Listen == "off" {
		v.at("listen").errorf("the HTTP listener cannot be turned off: the API lives there")
		return
	}
	validateListen(v.at("listen"), h.Listen)
}

func (h *HTTP) setDefaults() {
	if h.Listen == "" {
		h.Listen = "127.0.0.1:8080"
	}
}

// Store configures the embedded database.
type Store struct {
	// Path of the SQLite file, relative to the config file. Default
	// netboot.db next to the config.
	Path string `yaml:"path"`
}

func (s *Store) validate(scope) {}

func (s *Store) setDefaults(dir string) {
	if s.Path == "" {
		s.Path = "netboot.db"
	}
	if s.Path != ":memory:" && !filepath.IsAbs(s.Path) {
		s.Path = filepath.Join(dir, s.Path)
	}
}

// validateListen accepts "", "off" and host:port.
func validateListen(v scope, addr string) {
	if addr == "" || addr == "off" {
		return
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		v.errorf("%q is not host:port (or \"off\")", addr)
	}
}
