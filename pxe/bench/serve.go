package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"syscall"

	"github.com/pin/tftp/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/event"
	"netboot/pxe"
)

// PiSerial is the serial of simulated Pi number i.
func PiSerial(i int) string { return fmt.Sprintf("%08x", 0x1000+i) }

// benchConfig is the inventory our server gets: piHosts Raspberry Pis of
// class "pi" (directory pi/), known by serial.
func benchConfig(root string, piHosts int) *config.Config {
	cfg := &config.Config{
		Server: config.Server{ArtifactRoot: root, Address: "127.0.0.1"},
		Classes: map[string]config.Class{"pi": {Arch: config.ArchARM64, Firmware: config.FirmwareRPi,
			Dir: "pi", Kernel: "kernel8.img", Initrd: "initramfs"}},
	}
	for i := 0; i < piHosts; i++ {
		cfg.Hosts = append(cfg.Hosts, config.Host{Name: fmt.Sprintf("pi-%03d", i), Serial: PiSerial(i), Class: "pi", Arch: config.ArchARM64})
	}
	return cfg
}

// Environment that makes a bench binary (test/tftpbench, or its test
// binary under `make bench`) run one Go server instead: StartPeer re-runs
// the current executable with it.
const (
	serveEnv   = "TFTPBENCH_SERVE"
	rootEnv    = "TFTPBENCH_ROOT"
	addrEnv    = "TFTPBENCH_ADDR"
	piHostsEnv = "TFTPBENCH_PI_HOSTS"
	profileEnv = "TFTPBENCH_CPUPROFILE"
)

// ServeFromEnv runs the server that TFTPBENCH_SERVE names, if set, until
// SIGTERM; ok is false when the variable is not set. Call it first in
// main (or TestMain) of every program that calls Run.
func ServeFromEnv() (ok bool, err error) {
	name := os.Getenv(serveEnv)
	if name == "" {
		return false, nil
	}
	n, _ := strconv.Atoi(os.Getenv(piHostsEnv))
	return true, Serve(name, os.Getenv(addrEnv), os.Getenv(rootEnv), n, os.Getenv(profileEnv))
}

// Serve runs one Go server ("netboot" or "pin") on addr until SIGTERM.
// It is what StartPeer runs in a child process.
func Serve(name, addr, root string, piHosts int, cpuprofile string) error {
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	conn, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	switch name {
	case Netboot:
		return serveNetboot(ctx, conn, root, piHosts)
	case Pin:
		return servePin(ctx, conn, root)
	}
	return fmt.Errorf("serve: unknown server %q", name)
}

// countingSink stands in for the boot tracker.
type countingSink struct{ n atomic.Int64 }

func (c *countingSink) Emit(event.Event) { c.n.Add(1) }

func serveNetboot(ctx context.Context, conn net.PacketConn, root string, piHosts int) error {
	cfg := benchConfig(root, piHosts)
	arts, err := pxe.NewArtifacts(cfg, nil, pxe.ArtifactsConfig{})
	if err != nil {
		return err
	}
	defer arts.Close()
	// Production logging (one JSON line per transfer) into a file.
	zcfg := zap.NewProductionConfig()
	zcfg.OutputPaths = []string{filepath.Join(filepath.Dir(root), "netboot-transfers.log")}
	log, err := zcfg.Build()
	if err != nil {
		return fmt.Errorf("logger: %w", err)
	}
	defer log.Sync()
	sink := &countingSink{}
	workers, _ := strconv.Atoi(os.Getenv("TFTPBENCH_WORKERS")) // 0: the server's default
	srv, err := pxe.NewTFTP(pxe.TFTPConfig{Workers: workers}, conn, arts, sink, log, clock.Real{}, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	return srv.Serve(ctx)
}

// servePin is the bare pin/tftp v3 server of the research baseline: the
// handler opens the file, announces its size and hands the *os.File to
// ReadFrom; library defaults otherwise.
func servePin(ctx context.Context, conn net.PacketConn, root string) error {
	rootDir, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	s := tftp.NewServer(func(name string, rf io.ReaderFrom) error {
		f, err := rootDir.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil {
			rf.(tftp.OutgoingTransfer).SetSize(fi.Size())
		}
		_, err = rf.ReadFrom(f)
		return err
	}, nil)
	go func() { <-ctx.Done(); s.Shutdown() }()
	return s.Serve(conn)
}
