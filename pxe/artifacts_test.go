package pxe

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"netboot/internal/config"
)

// artConfigYAML is the inventory the TFTP and artifact tests use: two Pis
// (one by serial, one by MAC prefix) and one x86 host known by IP.
const artConfigYAML = `
server:
  artifact_root: ROOT
  address: 10.0.0.1
classes:
  cm4:
    arch: arm64
    firmware: rpi
    dir: rpi4
    kernel: kernel8.img
    initrd: initrd.img
    cmdline: "console={{.console}} nb.host={{.name}}"
    variables:
      console: serial0,115200
  udoo:
    arch: amd64
    firmware: uefi
    dir: x86
    kernel: vmlinuz
    initrd: initrd.img
    cmdline: "console=ttyS0 nb.host={{.name}} nb.server={{.server}}"
hosts:
  - name: pi-a
    serial: d9780558
    ip: 127.0.0.21
    class: cm4
    variables:
      role: storage
  - name: pi-b
    mac: dc:a6:32:01:36:c2
    serial: 0badcafe
    class: cm4
  - name: udoo
    mac: 00:11:22:33:44:55
    ip: 127.0.0.30
    class: udoo
`

// newArtTree writes a small artifact tree and returns the config and
// resolver for it.
func newArtTree(t testing.TB) (*config.Config, *Artifacts) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	files := map[string]string{
		"ipxe/undionly.kpxe":       "undionly",
		"ipxe/ipxe.efi":            "ipxe-efi",
		"rpi4/start4.elf":          strings.Repeat("S", 5000),
		"rpi4/fixup4.dat":          "fixup",
		"rpi4/bcm2711-rpi-cm4.dtb": "dtb",
		"rpi4/overlays/x.dtbo":     "overlay",
		"rpi4/kernel8.img":         "kernel",
		"rpi4/initrd.img":          "initrd",
		"rpi4/config.txt.tmpl":     "# {{.name}} serial {{.serial}}\narm_64bit=1\n",
		"rpi4/cmdline.txt.tmpl":    "{{.cmdline}} role={{.role}} server={{.server}}\n",
		"x86/vmlinuz":              "x86-kernel",
		"x86/initrd.img":           "x86-initrd",
		"shared.txt":               "shared",
		"12345678/start4.elf":      "literal-serial-dir",
	}
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"escape":            secret,
		"rpi4/up":           "../..",
		"rpi4/relative-out": "../../secret",
		"rpi4/inside":       "start4.elf",
		"x86/etc-link":      "/etc",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Parse("test.yaml", dir, []byte(strings.ReplaceAll(artConfigYAML, "ROOT", root)))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	a, err := NewArtifacts(cfg, nil, ArtifactsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return cfg, a
}

func TestArtifactsResolve(t *testing.T) {
	_, a := newArtTree(t)
	tests := []struct {
		name, path, client string
		wantHost, wantName string
		wantRole           Role
		wantErr            error
	}{
		{"pi serial prefix", "d9780558/start4.elf", "127.0.0.99", "pi-a", "rpi4/start4.elf", RoleFirmware, nil},
		{"pi serial upper case", "D9780558/fixup4.dat", "127.0.0.99", "pi-a", "rpi4/fixup4.dat", RoleFirmware, nil},
		{"pi mac prefix", "dc-a6-32-01-36-c2/start4.elf", "127.0.0.99", "pi-b", "rpi4/start4.elf", RoleFirmware, nil},
		{"pi overlay under prefix", "d9780558/overlays/x.dtbo", "127.0.0.99", "pi-a", "rpi4/overlays/x.dtbo", RoleFirmware, nil},
		{"pi probe of missing start.elf", "d9780558/start.elf", "127.0.0.99", "", "", "", ErrNotFound},
		{"pi unprefixed by ip", "kernel8.img", "127.0.0.21", "pi-a", "rpi4/kernel8.img", RoleKernel, nil},
		{"pi template", "d9780558/config.txt", "127.0.0.99", "pi-a", "rpi4/config.txt.tmpl", RoleConfig, nil},
		{"class cmdline without template", "cmdline.txt", "127.0.0.30", "udoo", "x86/cmdline.txt (class cmdline)", RoleConfig, nil},
		{"x86 by ip", "vmlinuz", "127.0.0.30", "udoo", "x86/vmlinuz", RoleKernel, nil},
		{"x86 initrd", "initrd.img", "127.0.0.30", "udoo", "x86/initrd.img", RoleInitramfs, nil},
		{"root file for known host", "ipxe/ipxe.efi", "127.0.0.30", "udoo", "ipxe/ipxe.efi", RoleFirmware, nil},
		{"root file for unknown client", "ipxe/undionly.kpxe", "127.0.0.99", "", "ipxe/undionly.kpxe", RoleFirmware, nil},
		{"unknown client gets no class files", "vmlinuz", "127.0.0.99", "", "", "", ErrNotFound},
		{"unknown serial is literal", "12345678/start4.elf", "127.0.0.99", "", "12345678/start4.elf", RoleFirmware, nil},
		{"symlink inside root", "rpi4/inside", "127.0.0.99", "", "rpi4/inside", RoleOther, nil},
		{"dot components", "./rpi4//./fixup4.dat", "127.0.0.99", "", "rpi4/fixup4.dat", RoleFirmware, nil},
		{"directory", "rpi4", "127.0.0.99", "", "", "", ErrNotFound},
		{"file as directory", "rpi4/start4.elf/x", "127.0.0.99", "", "", "", ErrNotFound},
		{"dotdot", "../secret", "127.0.0.99", "", "", "", ErrForbidden},
		{"dotdot inside", "rpi4/../../secret", "127.0.0.99", "", "", "", ErrForbidden},
		{"dotdot after prefix", "d9780558/../../secret", "127.0.0.99", "", "", "", ErrForbidden},
		{"absolute", "/etc/passwd", "127.0.0.99", "", "", "", ErrForbidden},
		{"backslash", `rpi4\..\..\secret`, "127.0.0.99", "", "", "", ErrForbidden},
		{"nul", "rpi4/start4.elf\x00../x", "127.0.0.99", "", "", "", ErrForbidden},
		{"symlink to outside file", "escape", "127.0.0.99", "", "", "", ErrForbidden},
		{"symlink to parent dir", "rpi4/up/secret", "127.0.0.99", "", "", "", ErrForbidden},
		{"relative symlink out", "rpi4/relative-out", "127.0.0.99", "", "", "", ErrForbidden},
		{"absolute symlink dir", "x86/etc-link/passwd", "127.0.0.99", "", "", "", ErrForbidden},
		{"symlink out via host class", "etc-link/passwd", "127.0.0.30", "", "", "", ErrForbidden},
		{"raw template refused", "rpi4/config.txt.tmpl", "127.0.0.99", "", "", "", ErrForbidden},
		{"empty", "", "127.0.0.99", "", "", "", ErrForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := a.Open(Request{Path: tc.path, Client: netip.MustParseAddr(tc.client)})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Open(%q) error = %v, want %v", tc.path, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open(%q): %v", tc.path, err)
			}
			defer f.Close()
			gotHost := ""
			if f.Host != nil {
				gotHost = f.Host.Name
			}
			if gotHost != tc.wantHost || f.Name != tc.wantName || f.Role != tc.wantRole {
				t.Fatalf("Open(%q) = host %q name %q role %q; want %q %q %q", tc.path, gotHost, f.Name, f.Role, tc.wantHost, tc.wantName, tc.wantRole)
			}
		})
	}
}

func TestArtifactsCacheRevalidates(t *testing.T) {
	cfg, a := newArtTree(t)
	read := func() string {
		f, err := a.Open(Request{Path: "shared.txt"})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b, ok := f.Bytes()
		if !ok {
			t.Fatal("shared.txt not served from memory")
		}
		return string(b)
	}
	if got := read(); got != "shared" {
		t.Fatalf("first read %q", got)
	}
	p := filepath.Join(cfg.Server.ArtifactRoot, "shared.txt")
	tmp := p + ".new"
	if err := os.WriteFile(tmp, []byte("replaced!"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "replaced!" {
		t.Fatalf("after rename got %q, want the new content", got)
	}
}

func TestArtifactsPreferFile(t *testing.T) {
	_, a := newArtTree(t)
	f, err := a.Open(Request{Path: "rpi4/start4.elf", PreferFile: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, ok := f.File(); !ok {
		t.Fatal("PreferFile did not return an open file")
	}
	if f.Size != 5000 {
		t.Fatalf("size %d", f.Size)
	}
}

func TestClassifyRole(t *testing.T) {
	cl := &config.Class{Kernel: "Image-6.1", Initrd: "root.gz"}
	tests := []struct {
		name string
		cl   *config.Class
		want Role
	}{
		{"rpi4/Image-6.1", cl, RoleKernel},
		{"rpi4/root.gz", cl, RoleInitramfs},
		{"config.txt", nil, RoleConfig},
		{"cmdline.txt", nil, RoleConfig},
		{"boot/host.ipxe", nil, RoleConfig},
		{"kernel8.img", nil, RoleKernel},
		{"vmlinuz-6.1.0-amd64", nil, RoleKernel},
		{"initrd.img-6.1", nil, RoleInitramfs},
		{"initramfs.cpio.gz", nil, RoleInitramfs},
		{"start4.elf", nil, RoleFirmware},
		{"fixup4.dat", nil, RoleFirmware},
		{"bcm2711-rpi-cm4.dtb", nil, RoleFirmware},
		{"overlays/disable-bt.dtbo", nil, RoleFirmware},
		{"ipxe/undionly.kpxe", nil, RoleFirmware},
		{"ipxe/ipxe-arm64.efi", nil, RoleFirmware},
		{"README", nil, RoleOther},
	}
	for _, tc := range tests {
		if got := ClassifyRole(tc.name, tc.cl); got != tc.want {
			t.Errorf("ClassifyRole(%q) = %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestRenderedTemplatesGolden renders the per-host files of both Pis and
// compares them with golden files (go test -run Golden -update rewrites).
func TestRenderedTemplatesGolden(t *testing.T) {
	_, a := newArtTree(t)
	for _, req := range []string{"d9780558/config.txt", "d9780558/cmdline.txt", "dc-a6-32-01-36-c2/config.txt"} {
		f, err := a.Open(Request{Path: req})
		if err != nil {
			t.Fatalf("Open(%q): %v", req, err)
		}
		b, _ := f.Bytes()
		golden(t, filepath.Join("testdata", "artifacts-golden", strings.ReplaceAll(req, "/", "_")), string(b))
	}
	// pi-b has no "role" variable: its cmdline.txt must not be served
	// half-rendered.
	if _, err := a.Open(Request{Path: "dc-a6-32-01-36-c2/cmdline.txt"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("template with a missing variable: err = %v, want ErrNotFound", err)
	}
}

// TestExampleTreeRenders serves the example tree (images/) with the
// example config and compares a Pi's per-host files with golden files.
func TestExampleTreeRenders(t *testing.T) {
	cfg, err := config.Load("../images/example/netbootd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewArtifacts(cfg, nil, ArtifactsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, req := range []string{"d9780558/config.txt", "d9780558/cmdline.txt"} {
		f, err := a.Open(Request{Path: req})
		if err != nil {
			t.Fatalf("Open(%q): %v", req, err)
		}
		if f.Host == nil || f.Host.Serial != "d9780558" || !f.Rendered {
			t.Fatalf("Open(%q) = %+v, want a rendered file for the host with serial d9780558", req, f)
		}
		b, _ := f.Bytes()
		golden(t, filepath.Join("testdata", "artifacts-golden", "example_"+strings.ReplaceAll(req, "/", "_")), string(b))
	}
}

// FuzzArtifactsOpen checks that no name ever resolves outside the root and
// that every refusal is one of the two sentinels.
func FuzzArtifactsOpen(f *testing.F) {
	for _, s := range []string{"d9780558/start4.elf", "../secret", "/etc/passwd", "rpi4/up/secret",
		"escape", `a\b`, "x\x00y", "rpi4/./../rpi4/fixup4.dat", "dc-a6-32-01-36-c2/config.txt",
		"rpi4/config.txt.tmpl", "x86/etc-link/passwd", "....//....//secret", "%2e%2e/secret"} {
		f.Add(s, uint8(99))
	}
	_, a := newArtTree(f)
	f.Fuzz(func(t *testing.T, name string, last uint8) {
		client := netip.AddrFrom4([4]byte{127, 0, 0, last})
		art, err := a.Open(Request{Path: name, Client: client})
		if err != nil {
			if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrForbidden) {
				t.Fatalf("Open(%q): error %v wraps neither sentinel", name, err)
			}
			return
		}
		defer art.Close()
		b, _ := art.Bytes()
		if string(b) == "secret" {
			t.Fatalf("Open(%q) escaped the root", name)
		}
		if strings.Contains(art.Name, "..") || strings.HasPrefix(art.Name, "/") {
			t.Fatalf("Open(%q) served %q", name, art.Name)
		}
	})
}

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"a/b", "../x", "/x", "a\\b", "a\x00b", "./a//b/", "a/..", "..", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		parts, err := CleanPath(p)
		if err != nil {
			return
		}
		for _, c := range parts {
			if c == "" || c == "." || c == ".." || strings.ContainsAny(c, "/\\\x00") {
				t.Fatalf("CleanPath(%q) = %q", p, parts)
			}
		}
	})
}
