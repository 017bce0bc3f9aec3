package initramfs

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/u-root/gobusybox/src/pkg/bb"
	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/cpio"
	"github.com/u-root/mkuimage/uimage/builder"
	"github.com/u-root/mkuimage/uimage/initramfs"
	"github.com/u-root/uio/llog"
)

// localBB is mkuimage's busybox builder with one fix for this module:
// gobusybox builds in GOPATH mode and copies only dependencies whose import
// path looks like a domain ("example.com/..."), treating the rest as the
// standard library. netboot's own packages ("netboot/initramfs/marker")
// would be missing, so they are copied into the generated tree before the
// build.
type localBB struct {
	goCmd     string
	sourceDir string // netboot module root
}

var _ builder.Builder = (*localBB)(nil)

func (*localBB) DefaultBinaryDir() string { return "bbin" }

func (b *localBB) Build(l *llog.Logger, af *initramfs.Files, opts builder.Opts) error {
	if opts.TempDir == "" || opts.Env == nil {
		return fmt.Errorf("busybox build: temp dir and Go environment are required")
	}
	bbPath := filepath.Join(opts.TempDir, "bb")
	gen := filepath.Join(opts.TempDir, "gen")
	bopts := &bb.Opts{Env: opts.Env, GenSrcDir: gen, CommandPaths: opts.Packages, BinaryPath: bbPath,
		GoBuildOpts: opts.BuildOpts, GenerateOnly: true}
	if err := bb.BuildBusybox(l.AtLevel(slog.LevelInfo), bopts); err != nil {
		return fmt.Errorf("busybox generate: %w", err)
	}
	if err := b.copyLocalPackages(opts.Env, filepath.Join(gen, "src")); err != nil {
		return err
	}
	env := opts.Env.Copy(golang.WithGO111MODULE("off"), golang.WithGOPATH(gen), golang.WithMod(""))
	if err := env.BuildDir(filepath.Join(gen, "src/bb.u-root.com/bb"), bbPath, opts.BuildOpts); err != nil {
		return fmt.Errorf("busybox build: %w", err)
	}
	if err := af.AddFile(bbPath, "bbin/bb"); err != nil {
		return err
	}
	for _, pkg := range opts.Packages {
		if err := af.AddRecord(cpio.Symlink(filepath.Join("bbin", path.Base(pkg)), "bb")); err != nil {
			return err
		}
	}
	return nil
}

// copyLocalPackages copies the non-main netboot packages the commands
// import into the generated GOPATH (src/<import path>).
func (b *localBB) copyLocalPackages(env *golang.Environ, srcRoot string) error {
	cmd := exec.Command(b.goCmd, "list", "-deps",
		"-f", `{{if .Module}}{{if eq .Module.Path "netboot"}}{{if ne .Name "main"}}{{.ImportPath}}|{{.Dir}}|{{join .GoFiles ","}}{{end}}{{end}}{{end}}`,
		"./cmd/nbinit")
	cmd.Dir = b.sourceDir
	cmd.Env = append(os.Environ(), "GOOS="+env.GOOS, "GOARCH="+env.GOARCH, "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("list local packages: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		parts := strings.Split(line, "|")
		if len(parts) != 3 {
			continue
		}
		dst := filepath.Join(srcRoot, filepath.FromSlash(parts[0]))
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		for _, f := range strings.Split(parts[2], ",") {
			if err := copyPath(filepath.Join(parts[1], f), filepath.Join(dst, f)); err != nil {
				return fmt.Errorf("copy local package %s: %w", parts[0], err)
			}
		}
	}
	return nil
}

func copyPath(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
