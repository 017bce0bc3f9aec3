// Package pxe serves the first stages of a network boot: DHCP and proxyDHCP,
// TFTP, HTTP artifacts and iPXE scripts, for x86 BIOS/UEFI, ARM64 UEFI and
// the Raspberry Pi 4/CM4 bootloader, all from one artifact tree.
//
// artifacts.go is the artifact tree resolver that TFTP and HTTP share: it
// maps a requested name and the requesting client to one file under
// server.artifact_root, never outside it (see images/README.md for the
// layout and the resolution rules).
package pxe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"netboot/internal/config"
	"netboot/internal/event"
)

// Errors returned by Artifacts.Open, wrapped with the reason. TFTP maps
// ErrNotFound to error 1 and ErrForbidden to error 2; HTTP to 404 and 403.
var (
	ErrNotFound  = errors.New("file not found")
	ErrForbidden = errors.New("access violation")
)

// Role says what a served file is for; it decides the boot stage a fetch
// proves reached.
type Role string

// File roles, as carried in the "role" attribute of file events.
const (
	RoleFirmware  Role = "firmware"
	RoleKernel    Role = "kernel"
	RoleInitramfs Role = "initramfs"
	RoleConfig    Role = "config"
	RoleOther     Role = "other"
)

// Stage returns the boot stage a completed fetch of a file of this role
// proves reached (StageNone for config and other files).
func (r Role) Stage() event.Stage {
	switch r {
	case RoleFirmware:
		return event.StageFirmware
	case RoleKernel:
		return event.StageKernel
	case RoleInitramfs:
		return event.StageInitramfs
	}
	return event.StageNone
}

// HostLookup finds the inventory host behind a client address: the
// inventory's static IPs, DHCP leases handed out or seen by pxe-dhcp, or a
// chain of both.
type HostLookup interface {
	HostByIP(ip netip.Addr) (*config.Host, bool)
}

// HostLookupFunc adapts a function to a HostLookup.
type HostLookupFunc func(netip.Addr) (*config.Host, bool)

// HostByIP calls f(ip).
func (f HostLookupFunc) HostByIP(ip netip.Addr) (*config.Host, bool) { return f(ip) }

// HostChain asks each lookup in turn and returns the first answer.
type HostChain []HostLookup

// HostByIP returns the first lookup's answer that knows ip.
func (c HostChain) HostByIP(ip netip.Addr) (*config.Host, bool) {
	for _, l := range c {
		if l == nil {
			continue
		}
		if h, ok := l.HostByIP(ip); ok {
			return h, true
		}
	}
	return nil, false
}

// InventoryHosts looks hosts up by the ip configured in the inventory.
func InventoryHosts(cfg *config.Config) HostLookup {
	byIP := map[netip.Addr]*config.Host{}
	for i := range cfg.Hosts {
		if a, ok := cfg.Hosts[i].Addr(); ok {
			byIP[a] = &cfg.Hosts[i]
		}
	}
	return HostLookupFunc(func(ip netip.Addr) (*config.Host, bool) {
		h, ok := byIP[ip.Unmap()]
		return h, ok
	})
}

// ArtifactsConfig tunes the resolver. Zero values mean the defaults.
type ArtifactsConfig struct {
	// CacheBytes bounds the file contents kept in memory (many clients fetch
	// the same few files). Default 512 MiB; negative disables the cache.
	CacheBytes int64
	// CacheMaxFile is the largest file that is cached. Default 128 MiB.
	CacheMaxFile int64
	// Initrd provides per-host nbinit images: a known host whose class
	// initrd is "nbinit" asking for NBInitFile gets its own image (a Pi's
	// config.txt names it with "initramfs nbinit.img followkernel"). Nil:
	// such requests are looked up in the tree like any other name.
	Initrd InitrdProvider
	// InitrdWait bounds how long a request waits for an image that is
	// still being assembled. Default 2s; the client retries after that.
	InitrdWait time.Duration
}

// NBInitFile is the file name under which TFTP and /files/ serve a host's
// own nbinit initramfs.
const NBInitFile = "nbinit.img"

func (c ArtifactsConfig) withDefaults() ArtifactsConfig {
	if c.CacheBytes == 0 {
		c.CacheBytes = 512 << 20
	}
	if c.CacheMaxFile == 0 {
		c.CacheMaxFile = 128 << 20
	}
	if c.InitrdWait == 0 {
		c.InitrdWait = 2 * time.Second
	}
	return c
}

// Artifacts resolves requests against the artifact tree. It is read-only
// and safe for concurrent use.
type Artifacts struct {
	cfg      *config.Config
	root     *os.Root
	hosts    HostLookup
	bySerial map[string]*config.Host
	byMAC    map[string]*config.Host // "dc-a6-32-01-36-c2"
	cache    *contentCache
	initrd   InitrdProvider
	wait     time.Duration
}

// NewArtifacts opens cfg.Server.ArtifactRoot. hosts may be nil (then only
// the inventory's static IPs identify clients).
func NewArtifacts(cfg *config.Config, hosts HostLookup, ac ArtifactsConfig) (*Artifacts, error) {
	root, err := os.OpenRoot(cfg.Server.ArtifactRoot)
	if err != nil {
		return nil, fmt.Errorf("open artifact root: %w", err)
	}
	if hosts == nil {
		hosts = InventoryHosts(cfg)
	}
	ac = ac.withDefaults()
	a := &Artifacts{cfg: cfg, root: root, hosts: hosts,
		bySerial: map[string]*config.Host{}, byMAC: map[string]*config.Host{},
		cache: newContentCache(ac), initrd: ac.Initrd, wait: ac.InitrdWait}
	for i := range cfg.Hosts {
		h := &cfg.Hosts[i]
		if h.Serial != "" {
			a.bySerial[strings.ToLower(h.Serial)] = h
		}
		if mac := h.HardwareAddr(); len(mac) == 6 {
			a.byMAC[strings.ReplaceAll(mac.String(), ":", "-")] = h
		}
	}
	return a, nil
}

// Close releases the artifact root.
func (a *Artifacts) Close() error { return a.root.Close() }

// Request is one fetch: the name the client asked for and its address.
type Request struct {
	Path   string
	Client netip.Addr
	// Host, when set, is the host the caller already knows (e.g. from an
	// HTTP URL /boot/{host}/…); otherwise prefixes and Client identify it.
	Host *config.Host
	// PreferFile asks for an open *os.File (HTTP sendfile) rather than
	// cached bytes when the file is not a rendered template.
	PreferFile bool
}

// Artifact is one resolved file, open for reading. Close it when done.
type Artifact struct {
	Requested string       // the name as the client sent it
	Name      string       // path under the root actually served ("rpi4/start4.elf")
	Host      *config.Host // nil when the client is unknown
	Role      Role
	Size      int64
	ModTime   time.Time
	Rendered  bool // Name is a template rendered for Host

	data []byte
	file *os.File
}

// Bytes returns the whole content when it is in memory (cached or rendered).
func (f *Artifact) Bytes() ([]byte, bool) { return f.data, f.file == nil }

// File returns the open file when the content is not in memory.
func (f *Artifact) File() (*os.File, bool) { return f.file, f.file != nil }

// ReadSeeker returns a reader over the content (for http.ServeContent).
func (f *Artifact) ReadSeeker() io.ReadSeeker {
	if f.file != nil {
		return f.file
	}
	return bytes.NewReader(f.data)
}

// ReaderAt returns random access to the content.
func (f *Artifact) ReaderAt() io.ReaderAt {
	if f.file != nil {
		return f.file
	}
	return bytes.NewReader(f.data)
}

// Close releases the file, if one is open.
func (f *Artifact) Close() error {
	if f.file != nil {
		return f.file.Close()
	}
	return nil
}

// HostName returns the host's inventory name, or "unknown:<client>".
func HostName(h *config.Host, client netip.Addr) string {
	if h != nil {
		return h.Name
	}
	return "unknown:" + client.String()
}

// Open resolves req to a file. Resolution order (images/README.md): a Pi
// serial or MAC prefix, or else the client's address, identifies the host;
// for a known host the name is looked up in its class directory, then at
// the root; at each place a "<name>.tmpl" template is rendered for the
// host in preference to a plain file. Errors wrap ErrNotFound or
// ErrForbidden.
func (a *Artifacts) Open(req Request) (*Artifact, error) {
	parts, err := CleanPath(req.Path)
	if err != nil {
		return nil, err
	}
	host, rest := a.identify(req, parts)
	name := path.Join(rest...)
	var cl *config.Class
	if host != nil {
		c := a.cfg.Classes[host.Class]
		cl = &c
	}
	if a.servesNBInit(host, cl, name) {
		return a.openNBInit(req, host)
	}
	for _, cand := range a.candidates(host, name) {
		f, err := a.openCandidate(req, host, cl, cand)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		f.Requested = req.Path
		return f, nil
	}
	return nil, fmt.Errorf("resolve %q for %s: %w", req.Path, HostName(host, req.Client), ErrNotFound)
}

// Identify returns the host a request comes from (by the Pi serial or MAC
// prefix of its name, then its address), or nil. It does not check that
// the file exists; servers use it to attribute refused requests.
func (a *Artifacts) Identify(req Request) *config.Host {
	parts, err := CleanPath(req.Path)
	if err != nil {
		parts = strings.Split(req.Path, "/")
	}
	h, _ := a.identify(req, parts)
	return h
}

func (a *Artifacts) identify(req Request, parts []string) (*config.Host, []string) {
	if req.Host != nil {
		return req.Host, parts
	}
	if h, rest := a.hostFromPrefix(parts); h != nil {
		return h, rest
	}
	if req.Client.IsValid() && a.hosts != nil {
		if h, ok := a.hosts.HostByIP(req.Client); ok {
			return h, parts
		}
	}
	return nil, parts
}

// CleanPath validates a requested name and splits it into components. It
// refuses (ErrForbidden) NUL and control bytes, backslashes, absolute
// names and ".." components; "." and empty components are dropped.
func CleanPath(p string) ([]string, error) {
	if p == "" {
		return nil, fmt.Errorf("check path: empty name: %w", ErrForbidden)
	}
	if len(p) > 1024 {
		return nil, fmt.Errorf("check path: name longer than 1024 bytes: %w", ErrForbidden)
	}
	if p[0] == '/' {
		return nil, fmt.Errorf("check path %q: absolute names are refused: %w", p, ErrForbidden)
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '\\':
			return nil, fmt.Errorf("check path %q: backslash refused: %w", p, ErrForbidden)
		case c < 0x20 || c == 0x7f:
			return nil, fmt.Errorf("check path %q: control byte 0x%02x refused: %w", p, c, ErrForbidden)
		}
	}
	var out []string
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "", ".":
			continue
		case "..":
			return nil, fmt.Errorf("check path %q: \"..\" refused: %w", p, ErrForbidden)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("check path %q: names no file: %w", p, ErrForbidden)
	}
	if strings.HasSuffix(out[len(out)-1], ".tmpl") {
		return nil, fmt.Errorf("check path %q: templates are not served raw: %w", p, ErrForbidden)
	}
	return out, nil
}

// hostFromPrefix recognises a leading Pi serial ("d9780558/") or MAC
// ("dc-a6-32-01-36-c2/") directory of a known host and strips it.
func (a *Artifacts) hostFromPrefix(parts []string) (*config.Host, []string) {
	if len(parts) < 2 {
		return nil, parts
	}
	key := strings.ToLower(parts[0])
	if h, ok := a.bySerial[key]; ok {
		return h, parts[1:]
	}
	if h, ok := a.byMAC[key]; ok {
		return h, parts[1:]
	}
	return nil, parts
}

// candidates lists the places name is looked up, in order.
func (a *Artifacts) candidates(host *config.Host, name string) []string {
	if host == nil {
		return []string{name}
	}
	return []string{path.Join(a.ClassDir(host), name), name}
}

// ClassDir returns the host's class directory under the root.
func (a *Artifacts) ClassDir(h *config.Host) string {
	if cl, ok := a.cfg.Classes[h.Class]; ok && cl.Dir != "" {
		return strings.Trim(path.Clean(cl.Dir), "/")
	}
	return h.Class
}

func (a *Artifacts) openCandidate(req Request, host *config.Host, cl *config.Class, name string) (*Artifact, error) {
	role := ClassifyRole(name, cl)
	if host != nil {
		f, err := a.render(host, name, role)
		if !errors.Is(err, ErrNotFound) {
			return f, err
		}
	}
	return a.openFile(req, host, name, role)
}

func (a *Artifacts) openFile(req Request, host *config.Host, name string, role Role) (*Artifact, error) {
	file, err := a.root.Open(name)
	if err != nil {
		return nil, openError(name, err)
	}
	fi, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("stat %q: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		file.Close()
		return nil, fmt.Errorf("open %q: not a regular file: %w", name, ErrNotFound)
	}
	f := &Artifact{Name: name, Host: host, Role: role, Size: fi.Size(), ModTime: fi.ModTime()}
	if req.PreferFile {
		f.file = file
		return f, nil
	}
	data, ok, err := a.cache.get(name, file, fi)
	if err != nil {
		file.Close()
		return nil, err
	}
	if !ok {
		f.file = file
		return f, nil
	}
	file.Close()
	f.data = data
	return f, nil
}

func openError(name string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrInvalid) || errors.Is(err, syscallENOTDIR) {
		return fmt.Errorf("open %q: %w", name, ErrNotFound)
	}
	// os.Root refuses names that escape the root (symlinks pointing out).
	if strings.Contains(err.Error(), "escapes from parent") || strings.Contains(err.Error(), "path escapes") {
		return fmt.Errorf("open %q: %v: %w", name, err, ErrForbidden)
	}
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("open %q: %v: %w", name, err, ErrForbidden)
	}
	return fmt.Errorf("open %q: %v: %w", name, err, ErrForbidden)
}

// render renders "<name>.tmpl" for host, if that template exists. A
// class directory's cmdline.txt without a template is the class's
// cmdline setting, rendered for the host.
func (a *Artifacts) render(host *config.Host, name string, role Role) (*Artifact, error) {
	// A class cmdline that does not render only matters to templates
	// that use it (they fail on the missing key).
	vars, cmdlineErr := a.TemplateVariables(host)
	src, err := a.root.ReadFile(name + ".tmpl")
	if err != nil {
		err = openError(name+".tmpl", err)
		if !errors.Is(err, ErrNotFound) || name != path.Join(a.ClassDir(host), "cmdline.txt") || a.cfg.Classes[host.Class].Cmdline == "" {
			return nil, err
		}
		if cmdlineErr != nil {
			return nil, fmt.Errorf("render %q for %s: %v: %w", name, host.Name, cmdlineErr, ErrNotFound)
		}
		out := []byte(vars["cmdline"] + "\n")
		return &Artifact{Name: name + " (class cmdline)", Host: host, Role: role, Size: int64(len(out)),
			ModTime: time.Now(), Rendered: true, data: out}, nil
	}
	out, err := RenderTemplate(name, string(src), vars)
	if err != nil {
		return nil, fmt.Errorf("render %q for %s: %v: %w", name+".tmpl", host.Name, err, ErrNotFound)
	}
	return &Artifact{Name: name + ".tmpl", Host: host, Role: role, Size: int64(len(out)),
		ModTime: time.Now(), Rendered: true, data: out}, nil
}

// TemplateVariables returns what templates see for host: the host's
// variables (config.HostVariables) plus "cmdline", the class's cmdline
// setting rendered for the host ("" when the class has none). When the
// cmdline does not render, the variables come without "cmdline", with
// the error.
func (a *Artifacts) TemplateVariables(host *config.Host) (map[string]string, error) {
	vars := a.cfg.HostVariables(host)
	cl := a.cfg.Classes[host.Class]
	if cl.Cmdline == "" {
		vars["cmdline"] = ""
		return vars, nil
	}
	out, err := RenderTemplate("cmdline", cl.Cmdline, vars)
	if err != nil {
		return vars, fmt.Errorf("class %s cmdline: %w", host.Class, err)
	}
	vars["cmdline"] = strings.TrimSpace(string(out))
	return vars, nil
}

// RenderTemplate renders a text/template over host variables; a missing
// variable is an error (never an empty string in a kernel command line).
func RenderTemplate(name, src string, vars map[string]string) ([]byte, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(src)
	if err != nil {
		return nil, fmt.Errorf("parse template: %w", err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, vars); err != nil {
		return nil, fmt.Errorf("execute template: %w", err)
	}
	return buf.Bytes(), nil
}

// ClassifyRole says what a file is for, from the class's kernel and initrd
// names first, then from well-known boot file names.
func ClassifyRole(name string, cl *config.Class) Role {
	base := strings.ToLower(path.Base(name))
	if cl != nil {
		if cl.Kernel != "" && base == strings.ToLower(path.Base(cl.Kernel)) {
			return RoleKernel
		}
		if cl.Initrd != "" && base == strings.ToLower(path.Base(cl.Initrd)) {
			return RoleInitramfs
		}
	}
	switch {
	case base == "config.txt" || base == "cmdline.txt" || hasSuffix(base, ".ipxe", ".cfg", ".conf"):
		return RoleConfig
	case hasPrefix(base, "initrd", "initramfs") || strings.Contains(base, ".cpio"):
		return RoleInitramfs
	case hasPrefix(base, "kernel", "vmlinuz", "vmlinux", "bzimage") || base == "image" || base == "image.gz":
		return RoleKernel
	case hasPrefix(base, "start", "fixup", "recover", "pieeprom", "bootcode", "undionly", "ipxe") ||
		hasSuffix(base, ".elf", ".dat", ".dtb", ".dtbo", ".kpxe", ".efi", ".pxe", ".0", ".bin", ".sig", ".upd"):
		return RoleFirmware
	}
	return RoleOther
}

func hasPrefix(s string, ps ...string) bool {
	for _, p := range ps {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func hasSuffix(s string, ss ...string) bool {
	for _, x := range ss {
		if strings.HasSuffix(s, x) {
			return true
		}
	}
	return false
}

// contentCache keeps whole files in memory, keyed by name and validated by
// inode, size and modification time, so that many clients fetching the
// same start4.elf or kernel cost one read.
type contentCache struct {
	cfg   ArtifactsConfig
	mu    sync.Mutex
	used  int64
	tick  uint64
	files map[string]*cacheEntry
}

type cacheEntry struct {
	ino     uint64
	size    int64
	mtime   time.Time
	lastUse uint64
	once    sync.Once
	data    []byte
	err     error
}

func newContentCache(cfg ArtifactsConfig) *contentCache {
	return &contentCache{cfg: cfg, files: map[string]*cacheEntry{}}
}

// get returns the file's content from the cache, reading it on a miss. ok
// is false when the file is not cacheable (too big, cache off).
func (c *contentCache) get(name string, f *os.File, fi fs.FileInfo) ([]byte, bool, error) {
	if c.cfg.CacheBytes < 0 || fi.Size() > c.cfg.CacheMaxFile || fi.Size() > c.cfg.CacheBytes {
		return nil, false, nil
	}
	ino := inodeOf(fi)
	c.mu.Lock()
	c.tick++
	e := c.files[name]
	if e == nil || e.ino != ino || e.size != fi.Size() || !e.mtime.Equal(fi.ModTime()) {
		if e != nil {
			c.used -= e.size
		}
		e = &cacheEntry{ino: ino, size: fi.Size(), mtime: fi.ModTime()}
		c.files[name] = e
		c.used += e.size
		c.evictLocked(name)
	}
	e.lastUse = c.tick
	c.mu.Unlock()
	e.once.Do(func() {
		buf := make([]byte, fi.Size())
		_, err := io.ReadFull(io.NewSectionReader(f, 0, fi.Size()), buf)
		if err != nil {
			e.err = fmt.Errorf("read %q into cache: %w", name, err)
			return
		}
		e.data = buf
	})
	if e.err != nil {
		c.mu.Lock()
		if c.files[name] == e {
			delete(c.files, name)
			c.used -= e.size
		}
		c.mu.Unlock()
		return nil, false, e.err
	}
	return e.data, true, nil
}

// evictLocked drops least recently used entries (other than keep) until
// the cache fits its budget.
func (c *contentCache) evictLocked(keep string) {
	for c.used > c.cfg.CacheBytes {
		var victim string
		var oldest uint64
		for n, e := range c.files {
			if n != keep && (victim == "" || e.lastUse < oldest) {
				victim, oldest = n, e.lastUse
			}
		}
		if victim == "" {
			return
		}
		c.used -= c.files[victim].size
		delete(c.files, victim)
	}
}

// syscallENOTDIR: a path component is a regular file ("start4.elf/x").
var syscallENOTDIR = syscall.ENOTDIR

func inodeOf(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

func (a *Artifacts) servesNBInit(host *config.Host, cl *config.Class, name string) bool {
	return a.initrd != nil && host != nil && cl.Initrd == InitrdNBInit && name == NBInitFile
}

// openNBInit opens host's assembled nbinit image (outside the artifact
// tree: it is netbootd's own output, in the initramfs cache).
func (a *Artifacts) openNBInit(req Request, host *config.Host) (*Artifact, error) {
	ctx, cancel := context.WithTimeout(context.Background(), a.wait)
	defer cancel()
	p, err := a.initrd.InitrdPath(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("assemble nbinit image for %s: %v: %w", host.Name, err, ErrNotFound)
	}
	file, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("open nbinit image for %s: %v: %w", host.Name, err, ErrNotFound)
	}
	fi, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("stat nbinit image for %s: %w", host.Name, err)
	}
	return &Artifact{Requested: req.Path, Name: NBInitFile, Host: host, Role: RoleInitramfs,
		Size: fi.Size(), ModTime: fi.ModTime(), file: file}, nil
}
