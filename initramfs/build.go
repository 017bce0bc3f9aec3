// Package initramfs builds netboot's u-root based initramfs images.
//
// An image is a chain of gzip-compressed cpio segments, which the kernel
// unpacks in order:
//
//  1. the base (per GOARCH): nbinit as /init and the gosh rescue shell as
//     /bin/sh, compiled into one busybox-style binary with the mkuimage API;
//     40-70 s to build, cached by a hash of its inputs;
//  2. the modules segment (per modules dir and module list): the kernel
//     modules with their dependencies, and /etc/nbinit/modules (load order);
//     cached likewise;
//  3. the host segment: /etc/nbinit/config.json, written on demand in
//     about a millisecond.
//
// Building the base needs a Go toolchain and the netboot module source (the
// directory with netboot's go.mod): Config.SourceDir, else $NETBOOT_SRC,
// else the module containing the working directory (`go env GOMOD`). A
// netbootd on a server without the source can be given prebuilt base images
// (`netbootctl initramfs build --base-only`) instead.
package initramfs

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/cpio"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/uio/llog"
	"go.uber.org/zap"
)

// Packages compiled into the base image.
const (
	InitPackage  = "netboot/cmd/nbinit"
	ShellPackage = "github.com/u-root/u-root/cmds/core/gosh"
)

// formatVersion changes when the image layout changes (invalidates caches).
const formatVersion = "nbinit-image-1"

// Arches are the supported GOARCH values.
var Arches = []string{"amd64", "arm64"}

// Config configures a Builder. Zero values mean the documented defaults.
type Config struct {
	// CacheDir holds base and modules segments. Required.
	CacheDir string
	// SourceDir is the netboot module root. Default: $NETBOOT_SRC, else
	// the module of the working directory.
	SourceDir string
	// Go is the go command. Default "go" on PATH.
	Go string
	// Bases maps GOARCH to a prebuilt base image used instead of compiling.
	Bases map[string]string
	Log   *zap.Logger
}

// Builder builds and caches image segments. It is safe for concurrent use;
// compiles are serialized (they set GOAMD64 in the process environment,
// which the gobusybox toolchain wrapper reads).
type Builder struct {
	cfg     Config
	log     *zap.Logger
	buildMu sync.Mutex

	modMu sync.Mutex // modules segments and the parsed module dirs
	dbs   map[string]cachedDB
}

// New returns a Builder.
func New(cfg Config) (*Builder, error) {
	if cfg.CacheDir == "" {
		return nil, errors.New("initramfs builder: CacheDir is required")
	}
	if cfg.Go == "" {
		cfg.Go = "go"
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("initramfs builder: create cache dir: %w", err)
	}
	return &Builder{cfg: cfg, log: cfg.Log}, nil
}

func checkArch(arch string) error {
	for _, a := range Arches {
		if a == arch {
			return nil
		}
	}
	return fmt.Errorf("unsupported arch %q (want amd64 or arm64)", arch)
}

// SourceDir returns the netboot module root the builder compiles from.
func (b *Builder) SourceDir(ctx context.Context) (string, error) {
	if b.cfg.SourceDir != "" {
		return b.cfg.SourceDir, nil
	}
	if d := os.Getenv("NETBOOT_SRC"); d != "" {
		return d, nil
	}
	out, err := exec.CommandContext(ctx, b.cfg.Go, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find netboot source: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("find netboot source: not inside a Go module; set initramfs.source_dir or NETBOOT_SRC")
	}
	data, err := os.ReadFile(gomod)
	if err != nil || !bytes.HasPrefix(bytes.TrimSpace(data), []byte("module netboot")) {
		return "", fmt.Errorf("find netboot source: %s is not netboot's go.mod; set initramfs.source_dir or NETBOOT_SRC", gomod)
	}
	return filepath.Dir(gomod), nil
}

// goEnv returns `go env NAME` (GOROOT, GOVERSION).
func (b *Builder) goEnv(ctx context.Context, name string) (string, error) {
	out, err := exec.CommandContext(ctx, b.cfg.Go, "env", name).Output()
	if err != nil {
		return "", fmt.Errorf("go env %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// BaseKey hashes everything the base image depends on: format, arch, CPU
// level, Go version, go.mod/go.sum and the sources of netboot's packages
// that nbinit imports (third-party code is pinned by go.sum).
func (b *Builder) BaseKey(ctx context.Context, arch string) (string, error) {
	src, err := b.SourceDir(ctx)
	if err != nil {
		return "", err
	}
	gover, err := b.goEnv(ctx, "GOVERSION")
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%s\n%s\n", formatVersion, arch, cpuLevel(arch), gover, ShellPackage)
	for _, f := range []string{"go.mod", "go.sum"} {
		if err := hashFile(h, filepath.Join(src, f)); err != nil {
			return "", err
		}
	}
	files, err := b.localSources(ctx, src, arch)
	if err != nil {
		return "", err
	}
	for _, f := range files {
		fmt.Fprintf(h, "%s\n", f)
		if err := hashFile(h, f); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:24], nil
}

func cpuLevel(arch string) string {
	if arch == "amd64" {
		return "GOAMD64=v1"
	}
	return "GOARM64=v8.0"
}

func hashFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("hash input: %w", err)
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// localSources lists the .go files of netboot packages nbinit depends on.
func (b *Builder) localSources(ctx context.Context, src, arch string) ([]string, error) {
	cmd := exec.CommandContext(ctx, b.cfg.Go, "list", "-deps",
		"-f", `{{if .Module}}{{if eq .Module.Path "netboot"}}{{.Dir}}|{{join .GoFiles ","}}{{end}}{{end}}`, "./cmd/nbinit")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("list nbinit sources: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var files []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		dir, names, ok := strings.Cut(line, "|")
		if !ok {
			continue
		}
		for _, n := range strings.Split(names, ",") {
			files = append(files, filepath.Join(dir, n))
		}
	}
	sort.Strings(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("list nbinit sources: no netboot packages found under %s", src)
	}
	return files, nil
}

// Base returns the path of the cached base image for arch, building it
// first if needed (or the configured prebuilt base).
func (b *Builder) Base(ctx context.Context, arch string) (string, error) {
	if err := checkArch(arch); err != nil {
		return "", err
	}
	if p := b.cfg.Bases[arch]; p != "" {
		return p, nil
	}
	key, err := b.BaseKey(ctx, arch)
	if err != nil {
		return "", fmt.Errorf("base image %s: %w", arch, err)
	}
	path := filepath.Join(b.cfg.CacheDir, "base-"+arch+"-"+key+".cpio.gz")
	if _, err := os.Stat(path); err == nil {
		b.log.Info("initramfs: base image cached", zap.String("arch", arch), zap.String("path", path))
		return path, nil
	}
	b.buildMu.Lock()
	defer b.buildMu.Unlock()
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := b.buildBase(ctx, arch, path); err != nil {
		return "", fmt.Errorf("base image %s: %w", arch, err)
	}
	return path, nil
}

// buildBase compiles nbinit + gosh (bb mode) into a gzip cpio at out.
func (b *Builder) buildBase(ctx context.Context, arch, out string) error {
	src, err := b.SourceDir(ctx)
	if err != nil {
		return err
	}
	goroot, err := b.goEnv(ctx, "GOROOT")
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(b.cfg.CacheDir, "build-")
	if err != nil {
		return fmt.Errorf("create temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	restore := setCPULevel(arch)
	defer restore()
	env := golang.Default(golang.WithGOROOT(goroot), golang.DisableCGO(), golang.WithGOOS("linux"),
		golang.WithGOARCH(arch), golang.WithWorkingDir(src))
	cpioPath := filepath.Join(tmp, "base.cpio")
	b.log.Info("initramfs: compiling base image", zap.String("arch", arch), zap.String("source", src))
	err = uimage.Create(llogFor(b.log),
		uimage.WithReplaceEnv(env),
		uimage.WithTempDir(tmp),
		uimage.WithBaseArchive(baseArchive()),
		uimage.WithCommands(nil, &localBB{goCmd: b.cfg.Go, sourceDir: src}, InitPackage, ShellPackage),
		uimage.WithInit("nbinit"),
		uimage.WithShell("gosh"),
		uimage.WithSkipLDD(),
		uimage.WithCPIOOutput(cpioPath),
	)
	if err != nil {
		return fmt.Errorf("mkuimage: %w", err)
	}
	return gzipFile(cpioPath, out)
}

// setCPULevel pins GOAMD64/GOARM64 for the toolchain (the Udoo's Braswell
// has no AVX) and returns a function restoring the environment.
func setCPULevel(arch string) func() {
	name, val, _ := strings.Cut(cpuLevel(arch), "=")
	old, had := os.LookupEnv(name)
	os.Setenv(name, val)
	return func() {
		if had {
			os.Setenv(name, old)
		} else {
			os.Unsetenv(name)
		}
	}
}

// baseArchive is the skeleton under the compiled commands.
func baseArchive() *cpio.Archive {
	a, _ := cpio.ArchiveFromRecords([]cpio.Record{
		cpio.Directory("bin", 0o755), cpio.Directory("dev", 0o755), cpio.Directory("etc", 0o755),
		cpio.Directory("etc/nbinit", 0o755), cpio.Directory("lib", 0o755), cpio.Directory("lib/modules", 0o755),
		cpio.Directory("newroot", 0o755), cpio.Directory("proc", 0o755), cpio.Directory("run", 0o755),
		cpio.Directory("sys", 0o755), cpio.Directory("tmp", 0o1777),
		cpio.CharDev("dev/console", 0o600, 5, 1), cpio.CharDev("dev/null", 0o666, 1, 3),
		cpio.CharDev("dev/kmsg", 0o600, 1, 11),
	})
	return a
}

// gzipFile compresses src to dst atomically with a reproducible header.
func gzipFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	zw, _ := gzip.NewWriterLevel(out, gzip.BestCompression)
	if _, err := io.Copy(zw, in); err != nil {
		out.Close()
		return fmt.Errorf("compress %s: %w", dst, err)
	}
	if err := zw.Close(); err != nil {
		out.Close()
		return fmt.Errorf("compress %s: %w", dst, err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// llogFor routes mkuimage's log lines to zap at debug level.
func llogFor(l *zap.Logger) *llog.Logger {
	return llog.New(slog.LevelInfo, func(format string, args ...any) {
		l.Debug("mkuimage: " + fmt.Sprintf(format, args...))
	})
}
