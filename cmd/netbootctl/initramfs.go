package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"netboot/initramfs"
)

func init() { register(newInitramfsCmd) }

func newInitramfsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "initramfs", Short: "Build and inspect nbinit initramfs images"}
	cmd.AddCommand(newInitramfsBuildCmd(), newInitramfsListCmd())
	return cmd
}

type initramfsBuildFlags struct {
	arch, modulesDir, out, cache, source string
	modules                              []string
	baseOnly                             bool
	host                                 initramfs.HostConfig
}

func newInitramfsBuildCmd() *cobra.Command {
	var f initramfsBuildFlags
	cmd := &cobra.Command{
		Use:   "build --arch amd64|arm64 [--modules DIR] --out FILE",
		Short: "Build an initramfs: nbinit as /init, the gosh rescue shell, kernel modules, host config",
		Long: `Builds a gzip cpio initramfs on the mkuimage API. The compiled base (nbinit +
gosh) is cached by a hash of its inputs in --cache; the modules (resolved with
their dependencies from DIR/modules.dep) and the host config are appended as
separate gzip cpio segments, which the kernel unpacks in order.

Building needs a Go toolchain and the netboot source: --source, $NETBOOT_SRC,
or run it inside the netboot checkout.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runInitramfsBuild(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.arch, "arch", "amd64", "GOARCH of the image: amd64 or arm64")
	fl.StringVar(&f.modulesDir, "modules", "", "kernel modules dir with modules.dep (lib/modules/<kver>); empty: no modules")
	fl.StringSliceVar(&f.modules, "module", nil, "modules to include (default: the arch's NIC drivers, netconsole, rbd, ext4)")
	fl.StringVar(&f.out, "out", "", "output file (required)")
	fl.StringVar(&f.cache, "cache", defaultCacheDir(), "cache dir for built segments")
	fl.StringVar(&f.source, "source", "", "netboot module root (default: $NETBOOT_SRC or the current module)")
	fl.BoolVar(&f.baseOnly, "base-only", false, "write only the compiled base (for initramfs.bases in netbootd's config)")
	fl.StringVar(&f.host.Host, "host", "", "host name written to the image config (nb.host)")
	fl.StringVar(&f.host.Server, "api", "", "netbootd HTTP ip:port for nbinit (nb.server)")
	fl.StringVar(&f.host.Netconsole, "netconsole", "", "netconsole collector ip:port (nb.netconsole)")
	fl.StringVar(&f.host.OnFailure, "on-failure", "", "shell, reboot or halt (nb.onfail)")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "netboot", "initramfs")
	}
	return filepath.Join(os.TempDir(), "netboot-initramfs")
}

func runInitramfsBuild(cmd *cobra.Command, f initramfsBuildFlags) error {
	b, err := initramfs.New(initramfs.Config{CacheDir: f.cache, SourceDir: f.source, Log: zap.NewNop()})
	if err != nil {
		return err
	}
	start := time.Now()
	var buf bytes.Buffer
	if f.baseOnly {
		base, err := b.Base(cmd.Context(), f.arch)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(base)
		if err != nil {
			return err
		}
		buf.Write(data)
	} else {
		spec := initramfs.ImageSpec{Arch: f.arch, ModulesDir: f.modulesDir, Modules: f.modules, Host: f.host}
		if err := b.Image(cmd.Context(), &buf, spec); err != nil {
			return err
		}
	}
	if err := os.WriteFile(f.out, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", f.out, err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%s, %d bytes) in %s\n", f.out, f.arch, buf.Len(), time.Since(start).Round(time.Millisecond))
	return nil
}

func newInitramfsListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list FILE",
		Short: "List the records of every segment of an initramfs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			lines, err := initramfs.Listing(data)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), strings.Join(lines, "\n"))
			return nil
		},
	}
}
