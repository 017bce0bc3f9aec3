package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
)

// This file holds the sections that other parts own. Each part's helper
// validates its own section here until it moves into a file of its own.

// Netconsole configures the netconsole UDP collector (netconsole/).
type Netconsole struct {
	// Listen is the UDP address. Default 127.0.0.1:6666; "off" disables it.
	Listen string `yaml:"listen"`
	// Retention keeps log lines at most this long. Default 720h (30 days).
	Retention Duration `yaml:"retention"`
	// MaxBytes bounds stored log text in total. Default 1 GiB.
	MaxBytes int64 `yaml:"max_bytes"`
	// Sockets is the number of SO_REUSEPORT sockets (and reader
	// goroutines) on Listen. Default 2.
	Sockets int `yaml:"sockets"`
	// RcvBuf is each socket's receive buffer in bytes (set with
	// SO_RCVBUFFORCE as root, so net.core.rmem_max does not cap it).
	// Default 4 MiB.
	RcvBuf int `yaml:"rcvbuf"`
}

func (n *Netconsole) validate(v scope) {
	validateListen(v.at("listen"), n.Listen)
	if n.MaxBytes < 0 {
		v.at("max_bytes").errorf("must not be negative")
	}
	if n.Sockets < 0 || n.Sockets > 64 {
		v.at("sockets").errorf("must be between 0 (default) and 64")
	}
	if n.RcvBuf < 0 {
		v.at("rcvbuf").errorf("must not be negative")
	}
}

func (n *Netconsole) setDefaults() {
	if n.Listen == "" {
		n.Listen = "127.0.0.1:6666"
	}
	if n.Retention == 0 {
		n.Retention = Duration(720 * 3600e9)
	}
	if n.MaxBytes == 0 {
		n.MaxBytes = 1 << 30
	}
}

// Ceph is how netbootd reaches the cluster that holds root images (rbd/).
// With no monitors configured the RBD hand-over is off and root/prepare
// answers 503 with that reason.
type Ceph struct {
	Monitors []string `yaml:"monitors"`
	ConfFile string   `yaml:"conf_file"` // optional ceph.conf
	User     string   `yaml:"user"`      // default "admin" (client.admin)
	Keyring  string   `yaml:"keyring"`   // keyring file of User
	// Timeout bounds every Ceph call. Default 10s.
	Timeout Duration `yaml:"timeout"`
}

func (c *Ceph) validate(v scope) {
	for i, m := range c.Monitors {
		if !validMonitor(m) {
			v.at(fmt.Sprintf("monitors[%d]", i)).errorf("%q is not ip:port or [v2:ip:port,v1:ip:port]", m)
		}
	}
	if len(c.Monitors) > 0 && c.Keyring == "" && c.ConfFile == "" {
		v.at("keyring").errorf("is required with monitors (the admin key of user %q)", c.User)
	}
}

// validMonitor accepts what the kernel and librados take in "mon host":
// host:port, or a bracketed address vector [v2:…,v1:…].
func validMonitor(m string) bool {
	if strings.HasPrefix(m, "[") && strings.HasSuffix(m, "]") && !strings.Contains(m, "]:") {
		for _, part := range strings.Split(m[1:len(m)-1], ",") {
			part = strings.TrimPrefix(strings.TrimPrefix(part, "v2:"), "v1:")
			if i := strings.LastIndexByte(part, '/'); i >= 0 {
				part = part[:i]
			}
			if _, _, err := net.SplitHostPort(part); err != nil {
				return false
			}
		}
		return true
	}
	_, port, err := net.SplitHostPort(m)
	return err == nil && port != ""
}

func (c *Ceph) setDefaults() {
	if c.User == "" {
		c.User = "admin"
	}
	if c.Timeout == 0 {
		c.Timeout = Duration(10e9)
	}
}

// RBD is the lock hand-over policy (see README "RBD hand-over").
type RBD struct {
	// UnrecordedSameIP says what to do when the lock owner has the host's
	// IP but not the client address its previous boot recorded: "refuse"
	// (default: an IP alone does not prove the owner dead; see
	// rbd/README.md) or "break".
	UnrecordedSameIP string `yaml:"unrecorded_same_ip"`
	// RemoveRangeBlocklist removes whole-IP and CIDR blocklist entries that
	// cover the host. Default true.
	RemoveRangeBlocklist *bool `yaml:"remove_range_blocklist"`
	// BlocklistExpiry for the dead client's entry. Default 1h.
	BlocklistExpiry Duration `yaml:"blocklist_expiry"`
}

func (r *RBD) validate(v scope) {
	switch r.UnrecordedSameIP {
	case "", "refuse", "break":
	default:
		v.at("unrecorded_same_ip").errorf("%q is not one of refuse, break", r.UnrecordedSameIP)
	}
}

func (r *RBD) setDefaults() {
	if r.UnrecordedSameIP == "" {
		r.UnrecordedSameIP = "refuse"
	}
	if r.RemoveRangeBlocklist == nil {
		t := true
		r.RemoveRangeBlocklist = &t
	}
	if r.BlocklistExpiry == 0 {
		r.BlocklistExpiry = Duration(3600e9)
	}
}

// Initramfs configures how netbootd builds and caches nbinit images
// (initramfs/), served per host at /boot/{host}/initrd.
type Initramfs struct {
	// CacheDir holds built base images and per-host assemblies. Default
	// cache/ next to the config.
	CacheDir string `yaml:"cache_dir"`
	// Modules is the kernel modules directory (lib/modules/<kver>, with
	// modules.dep) per arch (amd64, arm64). An arch without one gets images
	// without modules.
	Modules map[string]string `yaml:"modules"`
	// ModuleNames overrides the modules included (default: NIC drivers,
	// netconsole, rbd, ext4 and their dependencies).
	ModuleNames []string `yaml:"module_names"`
	// SourceDir is the netboot source tree (the directory of netboot's
	// go.mod) that base images are compiled from; needs a Go toolchain.
	// Default: $NETBOOT_SRC, else the module around the working directory.
	SourceDir string `yaml:"source_dir"`
	// Bases are prebuilt base images per arch (`netbootctl initramfs build
	// --base-only`), used instead of compiling; then no toolchain is needed.
	Bases map[string]string `yaml:"bases"`
	// OnFailure is what nbinit does when a stage fails past its deadline:
	// shell (default), reboot or halt.
	OnFailure string `yaml:"on_failure"`
	// Deadline bounds nbinit's retries of each stage. Default 5m.
	Deadline Duration `yaml:"deadline"`
	// Netconsole is the collector nbinit points netconsole at, ip:port.
	// Default: server.address and the port of netconsole.listen.
	Netconsole string `yaml:"netconsole"`
}

func (i *Initramfs) validate(v scope) {
	for arch := range i.Modules {
		if arch != ArchAMD64 && arch != ArchARM64 {
			v.at("modules").errorf("%q is not one of amd64, arm64", arch)
		}
	}
	for arch := range i.Bases {
		if arch != ArchAMD64 && arch != ArchARM64 {
			v.at("bases").errorf("%q is not one of amd64, arm64", arch)
		}
	}
	switch i.OnFailure {
	case "", "shell", "reboot", "halt":
	default:
		v.at("on_failure").errorf("%q is not one of shell, reboot, halt", i.OnFailure)
	}
}

func (i *Initramfs) setDefaults(dir string) {
	if i.CacheDir == "" {
		i.CacheDir = "cache"
	}
	if i.CacheDir[0] != '/' {
		i.CacheDir = dir + "/" + i.CacheDir
	}
	if i.OnFailure == "" {
		i.OnFailure = "shell"
	}
	if i.Deadline == 0 {
		i.Deadline = Duration(300e9)
	}
}

// Webhook is one receiver of boot reports.
type Webhook struct {
	URL string `yaml:"url"`
	// Events: any of failed, stuck, skipped, regression, succeeded.
	// Default: all but succeeded.
	Events []string `yaml:"events"`
	Secret string   `yaml:"secret"`
}

func (w *Webhook) validate(v scope) {
	if w.URL == "" {
		v.at("url").errorf("is required")
	} else if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.at("url").errorf("%q is not an http(s) URL", w.URL)
	}
	for i, e := range w.Events {
		switch e {
		case "failed", "stuck", "skipped", "regression", "succeeded":
		default:
			v.at(fmt.Sprintf("events[%d]", i)).errorf("%q is not one of failed, stuck, skipped, regression, succeeded", e)
		}
	}
}

func (w *Webhook) setDefaults() {
	if len(w.Events) == 0 {
		w.Events = []string{"failed", "stuck", "skipped", "regression"}
	}
}

// Signature is an operator-defined failure signature (added to the
// built-in catalogue).
type Signature struct {
	Name    string `yaml:"name"`
	Stage   string `yaml:"stage"`
	Match   string `yaml:"match"` // regular expression over netconsole lines
	Explain string `yaml:"explain"`
	Hint    string `yaml:"hint"`
	// Fatal fails the boot at once (default true); false only records the
	// line and names it as the probable cause if the boot gets stuck.
	Fatal *bool `yaml:"fatal"`
}

func (s *Signature) validate(v scope) {
	if s.Name == "" {
		v.at("name").errorf("is required")
	}
	if s.Match == "" {
		v.at("match").errorf("is required")
	} else if _, err := regexp.Compile(s.Match); err != nil {
		v.at("match").errorf("bad regular expression: %v", err)
	}
	if !validStageName(s.Stage) {
		v.at("stage").errorf("%q is not a stage name", s.Stage)
	}
}

// SmokeCheck is one host-class smoke test.
type SmokeCheck struct {
	Name string `yaml:"name"`
	Kind string `yaml:"kind"` // tcp, http, dns, ceph-osd-up, netconsole, command
	// Target is kind-specific: host:port (tcp), URL (http), name (dns),
	// OSD id (ceph-osd-up), regex (netconsole), argv[0] (command). It is a
	// template over the host's variables.
	Target  string   `yaml:"target"`
	Args    []string `yaml:"args"`
	Expect  string   `yaml:"expect"` // status/body regex/answer, kind-specific
	Timeout Duration `yaml:"timeout"`
	// Deadline bounds all retries. Default 2m.
	Deadline Duration `yaml:"deadline"`
}

func (s *SmokeCheck) validate(v scope) {
	if s.Name == "" {
		v.at("name").errorf("is required")
	}
	switch s.Kind {
	case "tcp", "http", "dns", "ceph-osd-up", "netconsole", "command":
	default:
		v.at("kind").errorf("%q is not one of tcp, http, dns, ceph-osd-up, netconsole, command", s.Kind)
	}
}
