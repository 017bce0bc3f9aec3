package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"netboot/initramfs/marker"
)

// mountTable is what the init stage mounts, in order.
func (n *Init) mountTable() []struct{ source, target, fstype string } {
	return []struct{ source, target, fstype string }{
		{"devtmpfs", n.Root.Dev, "devtmpfs"},
		{"proc", n.Root.Proc, "proc"},
		{"sysfs", n.Root.Sys, "sysfs"},
		{"tmpfs", n.Root.Run, "tmpfs"},
	}
}

// mountConfigfs mounts configfs once its module is loaded (the kernel
// creates /sys/kernel/config then). Without it netconsole cannot be
// configured, which is reported but does not stop the boot.
func (n *Init) mountConfigfs() error {
	if _, err := os.Stat(n.Root.ConfigFS); err != nil {
		return fmt.Errorf("configfs unavailable (configfs module not loaded?): %w", err)
	}
	if err := n.Sys.Mount("configfs", n.Root.ConfigFS, "configfs", 0, ""); err != nil {
		return fmt.Errorf("mount configfs on %s: %w", n.Root.ConfigFS, err)
	}
	return nil
}

// stageInit mounts the pseudo filesystems, reads the configuration, makes
// the kernel log verbose enough for netconsole and loads the modules.
func (n *Init) stageInit(ctx context.Context, _ int) (map[string]string, string, error) {
	for _, m := range n.mountTable() {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return nil, "", fmt.Errorf("create mount point %s: %w", m.target, err)
		}
		if err := n.Sys.Mount(m.source, m.target, m.fstype, 0, ""); err != nil {
			return nil, "", fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	cmdline, err := os.ReadFile(filepath.Join(n.Root.Proc, "cmdline"))
	if err != nil {
		return nil, "", fmt.Errorf("read kernel command line: %w", err)
	}
	cfg, err := loadConfig(n.Root.ConfigFile, string(cmdline))
	if err != nil {
		return nil, "", err
	}
	n.cfg = cfg
	// Userspace /dev/kmsg writes are rate limited and netconsole obeys the
	// console log level: make both permissive (best effort).
	_ = n.Sys.WriteSysfs(filepath.Join(n.Root.Proc, "sys/kernel/printk_devkmsg"), []byte("on\n"))
	_ = n.Sys.WriteSysfs(filepath.Join(n.Root.Proc, "sys/kernel/printk"), []byte("8\n"))
	loaded, failed, err := n.loadModules()
	if err != nil {
		return nil, "", err
	}
	attrs := map[string]string{"host": n.cfg.Host, "modules": fmt.Sprint(loaded)}
	if err := n.mountConfigfs(); err != nil {
		attrs["configfs_error"] = err.Error()
	}
	msg := "nbinit started"
	if len(failed) > 0 {
		attrs["modules_failed"] = strings.Join(failed, ",")
		msg = "nbinit started; some modules did not load"
	}
	return attrs, msg, nil
}

// loadModules loads the builder's list in order. A module that fails is
// reported but does not stop the boot: NIC drivers for absent hardware and
// CPU-specific crc32c variants are expected to fail on some hosts.
func (n *Init) loadModules() (loaded int, failed []string, err error) {
	b, err := os.ReadFile(n.Root.ModuleList)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("read module list: %w", err)
	}
	mods, err := parseModuleList(b)
	if err != nil {
		return 0, nil, err
	}
	for _, m := range mods {
		if moduleName(m.Path) == "netconsole" && n.cfg.Netconsole != "" {
			// Loaded by the network stage with a target parameter: only a
			// target that exists at load time replays the kernel log from
			// "Linux version" (a configfs target starts at its own enable).
			n.netconsoleModule = m
			loaded++
			continue
		}
		if err := n.Sys.LoadModule(m.Path, m.Params); err != nil && !errors.Is(err, os.ErrExist) {
			name := moduleName(m.Path)
			n.kmsg(fmt.Sprintf("nbinit: load module %s: %v", name, err))
			failed = append(failed, name)
			continue
		}
		loaded++
	}
	return loaded, failed, nil
}

// moduleName turns "/lib/modules/nbinit/20-crc32c_intel.ko" into
// "crc32c_intel".
func moduleName(path string) string {
	name := filepath.Base(path)
	if i := strings.Index(name, ".ko"); i >= 0 {
		name = name[:i]
	}
	if num, rest, ok := strings.Cut(name, "-"); ok && strings.Trim(num, "0123456789") == "" {
		name = rest
	}
	return name
}

// stageNetwork waits for carrier, gets a lease and turns netconsole on.
func (n *Init) stageNetwork(ctx context.Context, _ int) (map[string]string, string, error) {
	ifname, err := n.waitCarrier(ctx)
	if err != nil {
		return nil, "", err
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	lease, err := n.Net.DHCP(dctx, ifname)
	if err != nil {
		return map[string]string{"iface": ifname}, "", fmt.Errorf("dhcp on %s: %w", ifname, err)
	}
	n.lease = lease
	attrs := map[string]string{"iface": ifname, "ip": lease.IP, "router": lease.Router, "dhcp_server": lease.ServerID}
	n.setupAPI(attrs)
	if n.cfg.Netconsole != "" {
		if how, err := n.enableNetconsole(ctx); err != nil {
			attrs["netconsole_error"] = err.Error()
		} else {
			attrs["netconsole"] = n.cfg.Netconsole
			attrs["netconsole_target"] = how
		}
	}
	return attrs, "lease " + lease.IP + " on " + ifname, nil
}

func (n *Init) setupAPI(attrs map[string]string) {
	if n.cfg.Host == "" {
		n.cfg.Host = n.lease.Hostname
	}
	server := n.cfg.Server
	if server == "" && n.lease.ServerID != "" {
		server = net.JoinHostPort(n.lease.ServerID, "8080")
		attrs["server_from"] = "dhcp"
	}
	attrs["server"] = server
	if n.API == nil && server != "" && n.cfg.Host != "" {
		n.API = NewAPIClient("http://"+server, n.cfg.Host)
	}
}

// candidateLinks lists NICs: the configured one, else every interface with
// a device (physical or virtio), sorted.
func (n *Init) candidateLinks() ([]string, error) {
	if n.cfg.Interface != "" {
		return []string{n.cfg.Interface}, nil
	}
	dir := filepath.Join(n.Root.Sys, "class/net")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	var out []string
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "device")); err == nil {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return nil, errors.New("no network interface with a device (NIC driver not loaded?)")
	}
	return out, nil
}

// waitCarrier brings the candidates up and returns the first with carrier.
func (n *Init) waitCarrier(ctx context.Context) (string, error) {
	links, err := n.candidateLinks()
	if err != nil {
		return "", err
	}
	for _, l := range links {
		if err := n.Net.LinkUp(l); err != nil {
			n.kmsg(fmt.Sprintf("nbinit: link up %s: %v", l, err))
		}
	}
	deadline := n.Clock.Now().Add(time.Duration(n.cfg.CarrierTimeout))
	for {
		for _, l := range links {
			b, err := os.ReadFile(filepath.Join(n.Root.Sys, "class/net", l, "carrier"))
			if err == nil && strings.TrimSpace(string(b)) == "1" {
				return l, nil
			}
		}
		if !n.Clock.Now().Before(deadline) {
			return "", fmt.Errorf("no carrier on %s within %s", strings.Join(links, ","), time.Duration(n.cfg.CarrierTimeout))
		}
		if err := n.Sleep(ctx, 100*time.Millisecond); err != nil {
			return "", err
		}
	}
}

// enableNetconsole turns on an extended netconsole target towards the
// collector. It loads the netconsole module with the target as a parameter
// when it can, so that the kernel replays its whole log buffer (the
// collector sees the boot from "Linux version" on); when the module is
// already loaded it adds the target through configfs instead. It returns
// how the target was made.
func (n *Init) enableNetconsole(ctx context.Context) (string, error) {
	host, port, err := net.SplitHostPort(n.cfg.Netconsole)
	if err != nil {
		return "", fmt.Errorf("netconsole address %q: %w", n.cfg.Netconsole, err)
	}
	mac := n.netconsoleMAC(ctx, host)
	localIP, _, _ := strings.Cut(n.lease.IP, "/")
	if m := n.netconsoleModule; m.Path != "" {
		n.netconsoleModule = moduleEntry{}
		param := fmt.Sprintf("netconsole=+6665@%s/%s,%s@%s/%s", localIP, n.lease.Interface, port, host, mac)
		err := n.Sys.LoadModule(m.Path, strings.TrimSpace(m.Params+" "+param))
		if err == nil {
			return "module parameter (kernel log replayed)", nil
		}
		if !errors.Is(err, os.ErrExist) {
			n.kmsg(fmt.Sprintf("nbinit: load netconsole with target: %v; trying configfs", err))
		}
	}
	return "configfs", n.configfsNetconsole(host, port, mac, localIP)
}

// configfsNetconsole creates an extended target through configfs.
func (n *Init) configfsNetconsole(host, port, mac, localIP string) error {
	base := filepath.Join(n.Root.ConfigFS, "netconsole")
	if _, err := os.Stat(base); err != nil {
		return fmt.Errorf("netconsole configfs missing (module not loaded?): %w", err)
	}
	dir := filepath.Join(base, "nbinit")
	if _, err := os.Stat(dir); err == nil {
		_ = n.Sys.WriteSysfs(filepath.Join(dir, "enabled"), []byte("0"))
	} else if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("create netconsole target: %w", err)
	}
	for _, kv := range [][2]string{
		{"dev_name", n.lease.Interface}, {"local_ip", localIP}, {"remote_ip", host},
		{"remote_port", port}, {"remote_mac", mac}, {"extended", "1"}, {"enabled", "1"},
	} {
		if err := n.Sys.WriteSysfs(filepath.Join(dir, kv[0]), []byte(kv[1])); err != nil {
			return fmt.Errorf("netconsole %s=%s: %w", kv[0], kv[1], err)
		}
	}
	return nil
}

// netconsoleMAC resolves the next hop towards the collector; broadcast if
// it cannot (netconsole then still reaches an on-link collector).
func (n *Init) netconsoleMAC(ctx context.Context, collector string) string {
	hop := collector
	if _, subnet, err := net.ParseCIDR(n.lease.IP); err == nil && n.lease.Router != "" {
		if ip := net.ParseIP(collector); ip != nil && !subnet.Contains(ip) {
			hop = n.lease.Router
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	mac, err := n.Net.NeighborMAC(rctx, n.lease.Interface, hop)
	if err != nil {
		n.kmsg(fmt.Sprintf("nbinit: resolve %s for netconsole: %v; using broadcast", hop, err))
		return "ff:ff:ff:ff:ff:ff"
	}
	return mac
}

// stageRootPrepare asks netbootd to hand the root image over.
func (n *Init) stageRootPrepare(ctx context.Context, _ int) (map[string]string, string, error) {
	if n.API == nil {
		return nil, "", errors.New("no API: set nb.host and nb.server (or the image config)")
	}
	p, err := n.API.Prepare(ctx)
	if err != nil {
		return nil, "", err
	}
	if err := p.validate(); err != nil {
		return nil, "", err
	}
	n.prepared = p
	return map[string]string{"pool": p.Pool, "image": p.Image, "monitors": strings.Join(p.Monitors, ","),
		"actions": fmt.Sprint(len(p.Actions))}, "root " + p.Pool + "/" + p.Image + " prepared", nil
}

// stageRootMap maps the image with the kernel rbd driver and reports the
// new client's address to netbootd.
func (n *Init) stageRootMap(ctx context.Context, _ int) (map[string]string, string, error) {
	devs := filepath.Join(n.Root.Sys, "bus/rbd/devices")
	before := listDir(devs)
	if err := n.Sys.WriteSysfs(filepath.Join(n.Root.Sys, "bus/rbd/add_single_major"), []byte(n.prepared.MapSpec())); err != nil {
		return nil, "", fmt.Errorf("rbd map %s/%s: %w", n.prepared.Pool, n.prepared.Image, err)
	}
	id, err := newEntry(before, listDir(devs))
	if err != nil {
		return nil, "", fmt.Errorf("rbd map %s/%s: %w", n.prepared.Pool, n.prepared.Image, err)
	}
	dev := filepath.Join(n.Root.Dev, "rbd"+id)
	if err := n.waitPath(ctx, dev, 30*time.Second); err != nil {
		// Unmap so that the retry starts clean.
		if uerr := n.Sys.WriteSysfs(filepath.Join(n.Root.Sys, "bus/rbd/remove_single_major"), []byte(id)); uerr != nil {
			err = fmt.Errorf("%w (and unmap rbd%s: %v)", err, id, uerr)
		}
		return nil, "", err
	}
	n.rootDev = dev
	mapped := Mapped{Device: "/dev/rbd" + id,
		ClientAddr: readTrim(filepath.Join(devs, id, "client_addr")),
		ClientID:   readTrim(filepath.Join(devs, id, "client_id"))}
	attrs := map[string]string{"device": mapped.Device, "client_addr": mapped.ClientAddr, "client_id": mapped.ClientID}
	if err := n.API.Mapped(ctx, mapped); err != nil {
		// Not fatal: the next boot's hand-over is refused instead of
		// guessing, which is safe.
		attrs["recorded"] = "false"
		n.kmsg("nbinit: report mapped client: " + err.Error())
	}
	return attrs, "mapped " + mapped.Device, nil
}

func (n *Init) waitPath(ctx context.Context, path string, timeout time.Duration) error {
	deadline := n.Clock.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if !n.Clock.Now().Before(deadline) {
			return fmt.Errorf("%s did not appear within %s", path, timeout)
		}
		if err := n.Sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

func listDir(dir string) map[string]bool {
	out := map[string]bool{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		out[e.Name()] = true
	}
	return out
}

func newEntry(before, after map[string]bool) (string, error) {
	var added []string
	for k := range after {
		if !before[k] {
			added = append(added, k)
		}
	}
	if len(added) != 1 {
		return "", fmt.Errorf("expected one new rbd device, found %d", len(added))
	}
	return added[0], nil
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

// stageRootMount mounts the mapped device and checks the real init exists.
func (n *Init) stageRootMount(ctx context.Context, _ int) (map[string]string, string, error) {
	if err := os.MkdirAll(n.Root.NewRoot, 0o755); err != nil {
		return nil, "", fmt.Errorf("create %s: %w", n.Root.NewRoot, err)
	}
	if err := n.Sys.Mount(n.rootDev, n.Root.NewRoot, n.cfg.RootFSType, 0, n.cfg.RootOptions); err != nil {
		return nil, "", fmt.Errorf("mount %s (%s) on %s: %w", n.rootDev, n.cfg.RootFSType, n.Root.NewRoot, err)
	}
	if _, err := os.Lstat(filepath.Join(n.Root.NewRoot, n.cfg.Init)); err != nil {
		return nil, "", fmt.Errorf("init %s not found on the root image: %w", n.cfg.Init, err)
	}
	return map[string]string{"device": n.rootDev, "fstype": n.cfg.RootFSType}, "root mounted", nil
}

// switchRoot reports the stage and hands PID 1 to the real init. It returns
// only if that failed.
func (n *Init) switchRoot(ctx context.Context) error {
	n.report(ctx, marker.Marker{Stage: "switch-root", Status: marker.StatusOK, Message: "exec " + n.cfg.Init,
		Attrs: map[string]string{"init": n.cfg.Init}})
	err := n.Sys.SwitchRoot(n.Root.NewRoot, n.cfg.Init)
	if err == nil {
		err = errors.New("switch_root returned without exec")
	}
	n.report(ctx, marker.Marker{Stage: "switch-root", Status: marker.StatusFailed, Message: err.Error()})
	return &stageError{Stage: "switch-root", Err: err}
}
