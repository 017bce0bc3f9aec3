package harness

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"netboot/internal/testenv"
)

// BusyboxInitramfs describes a small test initramfs: static busybox with all
// its applets, /dev/console, kernel modules with their dependencies, and an
// /init script. It is not the project's initramfs (initramfs/ builds that);
// tests use it to bring a Debian kernel up quickly (netconsole, rbd, DHCP).
type BusyboxInitramfs struct {
	Kernel  KernelInfo
	Modules []string          // module names; dependencies are added (modprobe --show-depends)
	Init    string            // /init script (shell)
	Files   map[string][]byte // extra files (path → content, mode 0755)
}

// Build writes the gzip newc archive to path.
func (b BusyboxInitramfs) Build(path string) error {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("build initramfs: %w", err)
	}
	defer f.Close()
	w := NewCPIOWriter(f)
	if err := b.write(w, bb); err != nil {
		return fmt.Errorf("build initramfs %s: %w", path, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("build initramfs %s: %w", path, err)
	}
	return f.Close()
}

func (b BusyboxInitramfs) write(w *CPIOWriter, bb string) error {
	for _, d := range []string{"proc", "sys", "dev", "tmp", "run", "mnt", "etc", "sbin", "usr/bin", "usr/sbin"} {
		if err := w.Dir(d); err != nil {
			return err
		}
	}
	if err := w.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	if err := w.CopyFile("bin/busybox", bb); err != nil {
		return err
	}
	applets, err := busyboxApplets(bb)
	if err != nil {
		return err
	}
	for _, a := range applets {
		if err := w.Symlink("bin/"+a, "busybox"); err != nil {
			return err
		}
	}
	if err := w.File("init", 0o755, []byte(b.Init)); err != nil {
		return err
	}
	names := make([]string, 0, len(b.Files))
	for name := range b.Files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := w.File(name, 0o755, b.Files[name]); err != nil {
			return err
		}
	}
	return b.writeModules(w)
}

func busyboxApplets(bb string) ([]string, error) {
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	var applets []string
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" {
			applets = append(applets, a)
		}
	}
	return applets, nil
}

// writeModules copies the modules and their dependencies, then the depmod
// index files of the kernel for exactly that set (generated with depmod -b on
// a scratch tree).
func (b BusyboxInitramfs) writeModules(w *CPIOWriter) error {
	if len(b.Modules) == 0 {
		return nil
	}
	files, err := ModuleFiles(b.Kernel, b.Modules...)
	if err != nil {
		return err
	}
	scratch, err := os.MkdirTemp("", "nbmods")
	if err != nil {
		return fmt.Errorf("modules scratch: %w", err)
	}
	defer os.RemoveAll(scratch)
	modRoot := filepath.Join("lib/modules", b.Kernel.Version)
	for _, f := range files {
		rel, err := filepath.Rel(b.Kernel.Modules, f)
		if err != nil {
			return fmt.Errorf("module path %s: %w", f, err)
		}
		dst := filepath.Join(scratch, modRoot, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("modules scratch: %w", err)
		}
		if err := os.Link(f, dst); err != nil {
			data, rerr := os.ReadFile(f)
			if rerr != nil {
				return fmt.Errorf("copy module %s: %w", f, rerr)
			}
			if err := os.WriteFile(dst, data, 0o644); err != nil {
				return fmt.Errorf("copy module %s: %w", f, err)
			}
		}
	}
	for _, idx := range []string{"modules.order", "modules.builtin", "modules.builtin.modinfo"} {
		if data, err := os.ReadFile(filepath.Join(b.Kernel.Modules, idx)); err == nil {
			os.WriteFile(filepath.Join(scratch, modRoot, idx), data, 0o644)
		}
	}
	if out, err := exec.Command("depmod", "-b", scratch, b.Kernel.Version).CombinedOutput(); err != nil {
		return fmt.Errorf("depmod: %w: %s", err, out)
	}
	return filepath.Walk(filepath.Join(scratch, "lib"), func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(scratch, p)
		return w.CopyFile(rel, p)
	})
}

// ModuleFiles resolves module names to their .ko files, dependencies first,
// with `modprobe -d <root> -S <version> --show-depends`.
func ModuleFiles(k KernelInfo, modules ...string) ([]string, error) {
	seen := map[string]bool{}
	var files []string
	for _, m := range modules {
		out, err := exec.Command("modprobe", "-d", k.Root, "-S", k.Version, "--show-depends", m).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("resolve module %s: %w: %s", m, err, out)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) >= 2 && fields[0] == "insmod" && !seen[fields[1]] {
				seen[fields[1]] = true
				files = append(files, fields[1])
			}
		}
	}
	return files, nil
}

// BuildBusyboxInitramfs builds b into the test's temp dir and returns its
// path; missing busybox or kmod skip/fail the test via testenv.
func BuildBusyboxInitramfs(t testing.TB, b BusyboxInitramfs) string {
	t.Helper()
	testenv.RequireTools(t, "busybox", "modprobe", "depmod")
	p := filepath.Join(t.TempDir(), "initrd.img")
	if err := b.Build(p); err != nil {
		t.Fatal(err)
	}
	return p
}
