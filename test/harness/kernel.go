package harness

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"netboot/internal/testenv"
)

// CacheEnv overrides the cache directory of downloaded test inputs.
const CacheEnv = "NETBOOT_CACHE"

// DefaultCache is where scripts/deps.d keeps downloads when $NETBOOT_CACHE is unset.
const DefaultCache = "/var/cache/netboot-test"

// CacheDir returns $NETBOOT_CACHE or DefaultCache.
func CacheDir() string {
	if d := os.Getenv(CacheEnv); d != "" {
		return d
	}
	return DefaultCache
}

// KernelInfo is an unpacked Debian kernel package.
type KernelInfo struct {
	Arch    string // Debian architecture: amd64, arm64
	Version string // kernel ABI, e.g. 6.1.0-56-amd64 (the modules dir name)
	Root    string // unpacked package root (has boot/ and lib/modules/)
	Vmlinuz string // kernel image
	Modules string // lib/modules/<Version>, depmod'ed
	Deb     string // the downloaded .deb
}

// Kernel returns the cached Debian kernel for arch as unpacked by
// scripts/deps.d/20-kernel.sh (`make deps`); a missing kernel skips the test,
// or fails it under NETBOOT_REQUIRE_ALL=1.
func Kernel(t testing.TB, arch string) KernelInfo {
	t.Helper()
	k, err := LoadKernel(CacheDir(), arch)
	if err != nil {
		testenv.Unavailable(t, fmt.Sprintf("Debian %s kernel: %v (run scripts/deps.d/20-kernel.sh %s)", arch, err, arch))
	}
	return k
}

// LoadKernel reads <cache>/kernel/<arch>/kernel.env and checks the files it names.
func LoadKernel(cache, arch string) (KernelInfo, error) {
	envPath := filepath.Join(cache, "kernel", arch, "kernel.env")
	f, err := os.Open(envPath)
	if err != nil {
		return KernelInfo{}, fmt.Errorf("load kernel: %w", err)
	}
	defer f.Close()
	vars, err := parseEnvFile(f)
	if err != nil {
		return KernelInfo{}, fmt.Errorf("load kernel: %s: %w", envPath, err)
	}
	k := KernelInfo{
		Arch: arch, Version: vars["KVER"], Root: vars["ROOT"],
		Vmlinuz: vars["VMLINUZ"], Modules: vars["MODULES"], Deb: vars["DEB"],
	}
	for _, p := range []string{k.Vmlinuz, filepath.Join(k.Modules, "modules.dep")} {
		if _, err := os.Stat(p); err != nil {
			return KernelInfo{}, fmt.Errorf("load kernel: %s names a missing file: %w", envPath, err)
		}
	}
	return k, nil
}

// parseEnvFile reads KEY=VALUE lines ('#' comments, blank lines ignored).
func parseEnvFile(f io.Reader) (map[string]string, error) {
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: want KEY=VALUE, got %q", n, line)
		}
		vars[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	return vars, nil
}
