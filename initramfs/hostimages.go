package initramfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"netboot/internal/clock"
	"netboot/internal/config"
)

// HostImagesConfig configures HostImages. Zero values mean defaults.
type HostImagesConfig struct {
	// Server is netbootd's HTTP address as hosts reach it (ip:port),
	// written into each image as nb.server. Required.
	Server string
	// Netconsole is the collector (ip:port); "" leaves netconsole off.
	Netconsole string
	// Modules is the modules dir per arch; ModuleNames overrides the list.
	Modules     map[string]string
	ModuleNames []string
	OnFailure   string
	Deadline    time.Duration
}

// HostImages assembles each host's image on demand from the cached base
// and modules segments and keeps it on disk, keyed by a hash of its
// inputs, so that netbootd can serve it with sendfile.
type HostImages struct {
	cfg   HostImagesConfig
	b     *Builder
	log   *zap.Logger
	clock clock.Clock

	mu      sync.Mutex
	perHost map[string]*sync.Mutex

	assembled *prometheus.CounterVec
	seconds   prometheus.Histogram
}

// NewHostImages returns the per-host image service; reg may be nil.
func NewHostImages(cfg HostImagesConfig, b *Builder, log *zap.Logger, clk clock.Clock, reg prometheus.Registerer) (*HostImages, error) {
	if cfg.Server == "" {
		return nil, fmt.Errorf("host images: the server address is required")
	}
	if log == nil {
		log = zap.NewNop()
	}
	if clk == nil {
		clk = clock.Real{}
	}
	h := &HostImages{cfg: cfg, b: b, log: log, clock: clk, perHost: map[string]*sync.Mutex{},
		assembled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netboot_initramfs_host_images_total",
			Help: "Per-host initramfs requests by result: cached, assembled, failed.",
		}, []string{"result"}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "netboot_initramfs_assembly_seconds",
			Help:    "Time to assemble one host's initramfs (base build excluded when cached).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{h.assembled, h.seconds} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("host images: register metrics: %w", err)
			}
		}
	}
	return h, nil
}

// HostConfigFor is the config.json written into host's image.
func (h *HostImages) HostConfigFor(host *config.Host) HostConfig {
	hc := HostConfig{Host: host.Name, Server: h.cfg.Server, Netconsole: h.cfg.Netconsole, OnFailure: h.cfg.OnFailure}
	if h.cfg.Deadline > 0 {
		hc.Deadline = h.cfg.Deadline.String()
	}
	return hc
}

// InitrdPath returns the path of host's assembled image, building what is
// missing (a cold base build takes about a minute; Warm avoids that wait).
func (h *HostImages) InitrdPath(ctx context.Context, host *config.Host) (string, error) {
	start := h.clock.Now()
	path, cached, err := h.initrdPath(ctx, host)
	log := h.log.With(zap.String("host", host.Name), zap.String("arch", host.Arch))
	switch {
	case err != nil:
		h.assembled.WithLabelValues("failed").Inc()
		log.Warn("initramfs: cannot provide the host's image", zap.Error(err))
	case cached:
		h.assembled.WithLabelValues("cached").Inc()
		log.Debug("initramfs: host image cached", zap.String("path", path))
	default:
		took := h.clock.Now().Sub(start)
		h.assembled.WithLabelValues("assembled").Inc()
		h.seconds.Observe(took.Seconds())
		log.Info("initramfs: host image assembled", zap.String("path", path), zap.Duration("took", took))
	}
	return path, err
}

func (h *HostImages) initrdPath(ctx context.Context, host *config.Host) (string, bool, error) {
	if err := checkArch(host.Arch); err != nil {
		return "", false, fmt.Errorf("host %s: %w", host.Name, err)
	}
	base, err := h.b.Base(ctx, host.Arch)
	if err != nil {
		return "", false, err
	}
	var mods string
	if dir := h.cfg.Modules[host.Arch]; dir != "" {
		if mods, _, err = h.b.ModulesSegment(host.Arch, dir, h.cfg.ModuleNames); err != nil {
			return "", false, err
		}
	}
	hc := h.HostConfigFor(host)
	key := imageKey(base, mods, hc)
	path := filepath.Join(h.b.cfg.CacheDir, "hosts", host.Name+"-"+key+".img")
	lock := h.hostLock(host.Name)
	lock.Lock()
	defer lock.Unlock()
	if _, err := os.Stat(path); err == nil {
		return path, true, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", false, fmt.Errorf("host image: %w", err)
	}
	h.removeOld(host.Name)
	err = writeFileAtomic(path, func(w io.Writer) error { return Assemble(w, base, mods, hc) })
	if err != nil {
		return "", false, fmt.Errorf("assemble image of %s: %w", host.Name, err)
	}
	return path, false, nil
}

func (h *HostImages) hostLock(name string) *sync.Mutex {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.perHost[name] == nil {
		h.perHost[name] = &sync.Mutex{}
	}
	return h.perHost[name]
}

// removeOld deletes the host's images built from older inputs.
func (h *HostImages) removeOld(name string) {
	old, _ := filepath.Glob(filepath.Join(h.b.cfg.CacheDir, "hosts", name+"-*.img"))
	for _, p := range old {
		os.Remove(p)
	}
}

func imageKey(base, mods string, hc HostConfig) string {
	hash := sha256.New()
	cfg, _ := json.Marshal(hc)
	fmt.Fprintf(hash, "%s\n%s\n%s\n", base, mods, cfg)
	return hex.EncodeToString(hash.Sum(nil))[:16]
}

// Warm builds the base (and modules segment) of each arch in the
// background so that the first boot does not wait for a compile.
func (h *HostImages) Warm(ctx context.Context, arches []string) {
	for _, arch := range arches {
		start := h.clock.Now()
		if _, err := h.b.Base(ctx, arch); err != nil {
			h.log.Warn("initramfs: base image build failed", zap.String("arch", arch), zap.Error(err))
			continue
		}
		if dir := h.cfg.Modules[arch]; dir != "" {
			if _, _, err := h.b.ModulesSegment(arch, dir, h.cfg.ModuleNames); err != nil {
				h.log.Warn("initramfs: modules segment failed", zap.String("arch", arch), zap.Error(err))
				continue
			}
		}
		h.log.Info("initramfs: ready", zap.String("arch", arch), zap.Duration("took", h.clock.Now().Sub(start)))
	}
}

// ServerAddr derives the ip:port hosts use from a public URL or an address
// and a listen address.
func ServerAddr(publicHostPort, address, listen string) string {
	if publicHostPort != "" {
		return publicHostPort
	}
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		port = "8080"
	}
	return net.JoinHostPort(address, port)
}
