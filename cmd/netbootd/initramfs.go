package main

import (
	"context"
	"net"
	"net/url"
	"sort"

	"go.uber.org/zap"

	"netboot/initramfs"
	"netboot/internal/api"
	"netboot/pxe"
)

// HostImages serves both the pxe handler (/boot/{host}/initrd) and the API.
var (
	_ pxe.InitrdProvider   = (*initramfs.HostImages)(nil)
	_ api.InitramfsService = (*initramfs.HostImages)(nil)
)

// setupInitramfs wires per-host nbinit images (initramfs/): the builder
// with its cache, the per-host assembly served at /boot/{host}/initrd (pxe
// asks through apiDeps.Initramfs), and a background warm-up that compiles
// the base image of every arch in the inventory so the first boot does not
// wait for it.
func (d *daemon) setupInitramfs(context.Context) error {
	ic := d.cfg.Initramfs
	b, err := initramfs.New(initramfs.Config{CacheDir: ic.CacheDir, SourceDir: ic.SourceDir, Bases: ic.Bases, Log: d.log.Named("initramfs")})
	if err != nil {
		return err
	}
	hi, err := initramfs.NewHostImages(initramfs.HostImagesConfig{
		Server:     initramfs.ServerAddr(publicHostPort(d.cfg.HTTP.PublicURL), d.cfg.Server.Address, d.cfg.HTTP.Listen),
		Netconsole: d.netconsoleTarget(), Modules: ic.Modules, ModuleNames: ic.ModuleNames,
		OnFailure: ic.OnFailure, Deadline: ic.Deadline.D(),
	}, b, d.log.Named("initramfs"), d.clock, d.registry)
	if err != nil {
		return err
	}
	d.apiDeps.Initramfs = hi
	arches := d.inventoryArches()
	d.services = append(d.services, service{name: "initramfs warm-up", serve: func(ctx context.Context) error {
		// A base build cannot be interrupted (mkuimage runs the Go
		// toolchain to completion), so shutdown does not wait for it.
		go hi.Warm(ctx, arches)
		<-ctx.Done()
		return nil
	}})
	d.log.Info("initramfs: per-host images enabled", zap.String("cache", ic.CacheDir), zap.Strings("arches", arches))
	return nil
}

// netconsoleTarget is where nbinit sends netconsole: initramfs.netconsole,
// else the server address with the collector's port.
func (d *daemon) netconsoleTarget() string {
	if d.cfg.Initramfs.Netconsole != "" {
		return d.cfg.Initramfs.Netconsole
	}
	if d.cfg.Netconsole.Listen == "off" {
		return ""
	}
	_, port, err := net.SplitHostPort(d.cfg.Netconsole.Listen)
	if err != nil {
		return ""
	}
	return net.JoinHostPort(d.cfg.Server.Address, port)
}

// inventoryArches lists the arches of the configured hosts.
func (d *daemon) inventoryArches() []string {
	seen := map[string]bool{}
	for _, h := range d.cfg.Hosts {
		if h.Arch != "" {
			seen[h.Arch] = true
		}
	}
	var out []string
	for a := range seen {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// publicHostPort is host:port of http.public_url, or "".
func publicHostPort(publicURL string) string {
	if publicURL == "" {
		return ""
	}
	u, err := url.Parse(publicURL)
	if err != nil || u.Host == "" {
		return ""
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "80")
	}
	return u.Host
}
