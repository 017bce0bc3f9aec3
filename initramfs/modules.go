package initramfs

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// DefaultModules are the kernel modules every image carries, per GOARCH:
// NIC drivers for the fleet (Udoo x86 II: r8169; CM4: genet) and QEMU,
// hardware RNGs, netconsole, rbd and the root
// filesystem. Names use '_' (modules.dep spelling is matched either way).
// Modules built into the kernel are skipped.
var DefaultModules = map[string][]string{
	"amd64": {"virtio_pci", "virtio_net", "e1000", "e1000e", "r8169", "igb", "virtio_rng", "netconsole", "rbd", "ext4"},
	// CM4: genet + its UniMAC MDIO bus + the BCM54213PE PHY driver, and
	// the BCM2711 hardware RNG (Ceph waits for entropy before connecting).
	"arm64": {"virtio_pci", "virtio_mmio", "virtio_net", "genet", "mdio_bcm_unimac", "broadcom", "iproc_rng200",
		"virtio_rng", "netconsole", "rbd", "ext4"},
}

// Module is one kernel module file to load, in dependency order.
type Module struct {
	Name string // e.g. "libceph"
	Rel  string // path relative to the modules dir, e.g. kernel/net/ceph/libceph.ko
}

// ModuleDB is a parsed modules dir (lib/modules/<kver>).
type ModuleDB struct {
	Dir     string
	deps    map[string][]string // rel path -> rel deps
	byName  map[string]string   // module name -> rel path
	builtin map[string]bool     // module name
	softdep map[string][]string // module name -> pre names
	alias   map[string][]string // exact alias -> module names
}

// modName turns "kernel/crypto/crc32c-intel.ko.xz" into "crc32c_intel".
func modName(rel string) string {
	base := filepath.Base(rel)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// OpenModuleDB reads modules.dep (required) and modules.builtin,
// modules.softdep and modules.alias (optional) from dir.
func OpenModuleDB(dir string) (*ModuleDB, error) {
	dep, err := os.ReadFile(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("open module db: %w (run depmod -b)", err)
	}
	db := &ModuleDB{Dir: dir, builtin: map[string]bool{}}
	if db.deps, db.byName, err = ParseModulesDep(dep); err != nil {
		return nil, fmt.Errorf("open module db %s: %w", dir, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			db.builtin[modName(l)] = true
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "modules.softdep"))
	db.softdep = parseSoftdep(b)
	b, _ = os.ReadFile(filepath.Join(dir, "modules.alias"))
	db.alias = parseAliases(b)
	return db, nil
}

// ParseModulesDep parses modules.dep ("rel.ko: dep1.ko dep2.ko" lines).
func ParseModulesDep(b []byte) (deps map[string][]string, byName map[string]string, err error) {
	deps, byName = map[string][]string{}, map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		mod, rest, ok := strings.Cut(line, ":")
		if !ok || mod == "" || strings.ContainsAny(mod, " \t") || !strings.Contains(mod, ".ko") {
			return nil, nil, fmt.Errorf("modules.dep line %d: %q is not \"module.ko: deps\"", n, cutLen(line, 60))
		}
		for _, d := range strings.Fields(rest) {
			if !strings.Contains(d, ".ko") {
				return nil, nil, fmt.Errorf("modules.dep line %d: dependency %q is not a module", n, cutLen(d, 60))
			}
			if filepath.IsAbs(d) || strings.Contains(d, "..") {
				return nil, nil, fmt.Errorf("modules.dep line %d: dependency %q leaves the modules dir", n, cutLen(d, 60))
			}
		}
		if filepath.IsAbs(mod) || strings.Contains(mod, "..") {
			return nil, nil, fmt.Errorf("modules.dep line %d: %q leaves the modules dir", n, cutLen(mod, 60))
		}
		deps[mod] = strings.Fields(rest)
		byName[modName(mod)] = mod
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("modules.dep: %w", err)
	}
	return deps, byName, nil
}

func cutLen(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// parseSoftdep reads "softdep mod pre: a b post: c" (pre only is used).
func parseSoftdep(b []byte) map[string][]string {
	out := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "softdep" {
			continue
		}
		pre := false
		for _, w := range f[2:] {
			switch w {
			case "pre:":
				pre = true
			case "post:":
				pre = false
			default:
				if pre {
					out[modName(f[1])] = append(out[modName(f[1])], w)
				}
			}
		}
	}
	return out
}

// parseAliases keeps exact (wildcard-free) aliases: "alias crc32c crc32c_generic".
func parseAliases(b []byte) map[string][]string {
	out := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "alias" || strings.ContainsAny(f[1], "*?[") {
			continue
		}
		out[f[1]] = append(out[f[1]], modName(f[2]))
	}
	return out
}

// Resolve returns the modules to load for names, dependencies first, each
// once. Soft pre-dependencies are followed through exact aliases (crc32c ->
// crc32c_generic, crc32c_intel) and are optional. A requested module that
// is neither a module nor built in is an error.
func (db *ModuleDB) Resolve(names []string) ([]Module, error) {
	r := &resolver{db: db, seen: map[string]bool{}}
	var missing []string
	for _, n := range names {
		n = strings.ReplaceAll(n, "-", "_")
		if !r.add(n, 0) && !db.builtin[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("resolve modules in %s: not found and not built in: %s", db.Dir, strings.Join(missing, ", "))
	}
	return r.out, nil
}

type resolver struct {
	db   *ModuleDB
	seen map[string]bool
	out  []Module
}

// add appends name and its dependencies; false if there is no such module.
func (r *resolver) add(name string, depth int) bool {
	rel, ok := r.db.byName[name]
	if !ok || depth > 32 {
		return false
	}
	if r.seen[rel] {
		return true
	}
	r.seen[rel] = true
	for _, soft := range r.db.softdep[name] {
		if !r.add(modName(soft), depth+1) {
			for _, target := range r.db.alias[soft] {
				r.add(target, depth+1)
			}
		}
	}
	// modules.dep lists the full closure; load it in reverse (deepest first).
	deps := r.db.deps[rel]
	for i := len(deps) - 1; i >= 0; i-- {
		r.add(modName(deps[i]), depth+1)
	}
	r.out = append(r.out, Module{Name: name, Rel: rel})
	return true
}
