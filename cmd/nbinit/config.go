package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Config is nbinit's configuration: the image's /etc/nbinit/config.json
// (written per host by netbootd), overridden by nb.* kernel parameters.
type Config struct {
	// Host is the inventory name used in API paths (nb.host).
	Host string `json:"host"`
	// Server is netbootd's HTTP address, ip:port (nb.server).
	Server string `json:"server"`
	// Netconsole is the collector, ip:port (nb.netconsole). Empty: off.
	Netconsole string `json:"netconsole"`
	// Interface restricts DHCP to one NIC (nb.iface). Empty: the first
	// physical NIC with carrier.
	Interface string `json:"interface"`
	// OnFailure is what PID 1 does once a stage has failed past the
	// deadline: "shell" (default; rescue shell, restarted when it exits),
	// "reboot" or "halt" (stay up, idle) (nb.onfail).
	OnFailure string `json:"on_failure"`
	// Deadline bounds retries of each retried stage (nb.deadline). Default 5m.
	Deadline Duration `json:"deadline"`
	// CarrierTimeout bounds the wait for link carrier. Default 30s.
	CarrierTimeout Duration `json:"carrier_timeout"`
	// RootFSType and RootOptions mount the mapped image. Default ext4, "".
	RootFSType  string `json:"root_fstype"`
	RootOptions string `json:"root_options"`
	// Init is the real system's init. Default /sbin/init.
	Init string `json:"init"`
	// Shell is the rescue shell. Default /bin/sh.
	Shell string `json:"shell"`
}

// Duration is a time.Duration written as "30s" in JSON.
type Duration time.Duration

// UnmarshalJSON parses "30s" or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var secs float64
		if err := json.Unmarshal(b, &secs); err != nil {
			return fmt.Errorf("parse duration: %s is neither \"30s\" nor seconds", b)
		}
		*d = Duration(secs * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("parse duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes "30s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (c *Config) setDefaults() {
	if c.OnFailure == "" {
		c.OnFailure = "shell"
	}
	if c.Deadline == 0 {
		c.Deadline = Duration(5 * time.Minute)
	}
	if c.CarrierTimeout == 0 {
		c.CarrierTimeout = Duration(30 * time.Second)
	}
	if c.RootFSType == "" {
		c.RootFSType = "ext4"
	}
	if c.Init == "" {
		c.Init = "/sbin/init"
	}
	if c.Shell == "" {
		c.Shell = "/bin/sh"
	}
}

func (c *Config) validate() error {
	switch c.OnFailure {
	case "shell", "reboot", "halt":
	default:
		return fmt.Errorf("on_failure %q is not one of shell, reboot, halt", c.OnFailure)
	}
	return nil
}

// loadConfig reads the config file (missing is fine) and applies the
// kernel command line on top.
func loadConfig(path, cmdline string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return c, fmt.Errorf("read config %s: %w", path, err)
	default:
		if err := json.Unmarshal(b, &c); err != nil {
			return c, fmt.Errorf("parse config %s: %w", path, err)
		}
	}
	if err := c.applyCmdline(parseCmdline(cmdline)); err != nil {
		return c, err
	}
	c.setDefaults()
	return c, c.validate()
}

func (c *Config) applyCmdline(p map[string]string) error {
	strs := map[string]*string{
		"nb.host": &c.Host, "nb.server": &c.Server, "nb.netconsole": &c.Netconsole,
		"nb.iface": &c.Interface, "nb.onfail": &c.OnFailure, "nb.init": &c.Init,
		"nb.rootfstype": &c.RootFSType, "nb.rootflags": &c.RootOptions,
	}
	for k, dst := range strs {
		if v, ok := p[k]; ok {
			*dst = v
		}
	}
	if v, ok := p["nb.deadline"]; ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("kernel parameter nb.deadline=%q: %w", v, err)
		}
		c.Deadline = Duration(d)
	}
	return nil
}

// parseCmdline splits a kernel command line into key=value parameters.
// Double quotes group spaces (key="a b"); a bare word maps to "". '-' in
// keys is stored as '_', as the kernel treats them alike.
func parseCmdline(s string) map[string]string {
	out := map[string]string{}
	for _, word := range splitQuoted(s) {
		k, v, _ := strings.Cut(word, "=")
		if strings.ContainsAny(k, " \t\n") {
			continue // an unterminated quote swallowed the rest, as in the kernel
		}
		k = strings.ReplaceAll(k, "-", "_")
		out[k] = strings.ReplaceAll(v, `"`, "")
	}
	return out
}

func splitQuoted(s string) []string {
	var words []string
	var cur strings.Builder
	inQuote, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			cur.WriteRune(r)
			have = true
		case (r == ' ' || r == '\t' || r == '\n') && !inQuote:
			if have {
				words = append(words, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		words = append(words, cur.String())
	}
	return words
}

// moduleEntry is one line of /etc/nbinit/modules: "path [params...]".
type moduleEntry struct {
	Path   string
	Params string
}

// parseModuleList reads the load-order list written by the image builder.
func parseModuleList(b []byte) ([]moduleEntry, error) {
	var out []moduleEntry
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		path, params, _ := strings.Cut(line, " ")
		if !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("module list line %d: %q is not an absolute path", i+1, path)
		}
		out = append(out, moduleEntry{Path: path, Params: strings.TrimSpace(params)})
	}
	return out, nil
}
