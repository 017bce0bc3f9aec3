// Package config loads and validates netbootd's YAML configuration.
//
// A configuration is read in two passes: YAML is decoded strictly (unknown
// fields are errors), then every section validates itself. All problems are
// collected, each with the line of the YAML node it concerns, so that
// `netbootctl config check` and netbootd print the same complete list.
//
// The zero value of every optional field means a documented default; Load
// fills defaults in after validation so that callers never see zeros. Each
// section lives in its own file with its own defaults and checks.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Config is the whole netbootd configuration.
type Config struct {
	Server     Server           `yaml:"server"`
	DHCP       DHCP             `yaml:"dhcp"`
	TFTP       TFTP             `yaml:"tftp"`
	HTTP       HTTP             `yaml:"http"`
	Netconsole Netconsole       `yaml:"netconsole"`
	Store      Store            `yaml:"store"`
	Ceph       Ceph             `yaml:"ceph"`
	RBD        RBD              `yaml:"rbd"`
	Initramfs  Initramfs        `yaml:"initramfs"`
	Webhooks   []Webhook        `yaml:"webhooks"`
	Signatures []Signature      `yaml:"signatures"`
	Classes    map[string]Class `yaml:"classes"`
	Hosts      []Host           `yaml:"hosts"`

	// Dir is the directory of the config file; relative paths in the file
	// are resolved against it. Set by Load.
	Dir string `yaml:"-"`
}

// Error is one problem in a configuration file.
type Error struct {
	File string
	Line int    // 1-based; 0 when unknown
	Path string // dotted path of the offending field, e.g. hosts[2].mac
	Msg  string
}

func (e Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Path != "" {
		return fmt.Sprintf("%s: %s: %s", loc, e.Path, e.Msg)
	}
	return fmt.Sprintf("%s: %s", loc, e.Msg)
}

// Errors is every problem found in one file, ordered by line.
type Errors []Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Load reads, validates and defaults the configuration in file.
func Load(file string) (*Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	dir, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(file, dir, data)
}

// Parse validates and defaults the configuration in data. name is used in
// error messages; dir resolves relative paths.
func Parse(name, dir string, data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Errors{yamlError(name, err)}
	}
	cfg := &Config{Dir: dir}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, errEOF(err)) {
		return nil, decodeErrors(name, err)
	}
	v := &validator{file: name, lines: lineIndex(&root)}
	cfg.validate(v)
	if len(v.errs) > 0 {
		sort.SliceStable(v.errs, func(i, j int) bool { return v.errs[i].Line < v.errs[j].Line })
		return nil, v.errs
	}
	cfg.setDefaults()
	return cfg, nil
}

func (c *Config) validate(v *validator) {
	c.Server.validate(v.at("server"))
	c.DHCP.validate(v.at("dhcp"), c)
	c.TFTP.validate(v.at("tftp"))
	c.HTTP.validate(v.at("http"))
	c.Netconsole.validate(v.at("netconsole"))
	c.Store.validate(v.at("store"))
	c.Ceph.validate(v.at("ceph"))
	c.RBD.validate(v.at("rbd"))
	c.Initramfs.validate(v.at("initramfs"))
	for i := range c.Webhooks {
		c.Webhooks[i].validate(v.at(fmt.Sprintf("webhooks[%d]", i)))
	}
	for i := range c.Signatures {
		c.Signatures[i].validate(v.at(fmt.Sprintf("signatures[%d]", i)))
	}
	c.validateClasses(v)
	c.validateHosts(v)
}

func (c *Config) setDefaults() {
	c.Server.setDefaults()
	c.DHCP.setDefaults()
	c.TFTP.setDefaults()
	c.HTTP.setDefaults()
	c.Netconsole.setDefaults()
	c.Store.setDefaults(c.Dir)
	c.Ceph.setDefaults()
	c.RBD.setDefaults()
	c.Initramfs.setDefaults(c.Dir)
	for i := range c.Webhooks {
		c.Webhooks[i].setDefaults()
	}
	for name, cl := range c.Classes {
		cl.setDefaults()
		c.Classes[name] = cl
	}
	if c.Server.ArtifactRoot != "" && !filepath.IsAbs(c.Server.ArtifactRoot) {
		c.Server.ArtifactRoot = filepath.Join(c.Dir, c.Server.ArtifactRoot)
	}
}

// Resolve makes a config-relative path absolute.
func (c *Config) Resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.Dir, p)
}

// HostByName returns the host with the given name.
func (c *Config) HostByName(name string) (*Host, bool) {
	for i := range c.Hosts {
		if c.Hosts[i].Name == name {
			return &c.Hosts[i], true
		}
	}
	return nil, false
}

// ClassOf returns the class of host h.
func (c *Config) ClassOf(h *Host) Class { return c.Classes[h.Class] }
