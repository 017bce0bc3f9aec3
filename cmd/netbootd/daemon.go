package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"netboot/internal/api"
	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/event"
	"netboot/internal/store/sqlite"
)

// service is one long-running part of the daemon.
type service struct {
	name  string
	serve func(ctx context.Context) error // returns nil on shutdown
	close func() error                    // may be nil
}

// daemon holds what the parts share. Each part's setup function (in its own
// file: boot.go, pxe.go, netconsole.go, rbd.go, initramfs.go) reads the
// config, builds its component, fills in its API dependency, mounts its
// HTTP handlers and adds its services.
type daemon struct {
	cfg      *config.Config
	log      *zap.Logger
	clock    clock.Clock
	store    *sqlite.DB
	registry *prometheus.Registry
	// events is where every part emits; boot.go sets it to the tracker.
	events  event.Sink
	apiDeps api.Deps
	// mux is the one HTTP listener's router; parts mount their handlers on
	// it (api at /api/, metrics at /metrics, pxe at /boot/ and /files/).
	mux      *http.ServeMux
	services []service
	closers  []func() error // run in reverse order after all services stopped
}

func run(ctx context.Context, configPath string) error {
	cfg, err := config.Load(configPath)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg.Server.LogLevel)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // nothing to do about a failed flush
	d, err := newDaemon(ctx, cfg, log)
	if err != nil {
		return err
	}
	return d.run(ctx)
}

func newDaemon(ctx context.Context, cfg *config.Config, log *zap.Logger) (*daemon, error) {
	db, err := sqlite.Open(ctx, cfg.Store.Path)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d := &daemon{
		cfg: cfg, log: log, clock: clock.Real{}, store: db, registry: reg,
		events: event.Discard, mux: http.NewServeMux(),
	}
	d.closers = append(d.closers, db.Close)
	// Order matters: the tracker first (everyone emits to it), the API last
	// (it exposes what the others built).
	steps := []struct {
		name  string
		setup func(context.Context) error
	}{
		{"boot tracker", d.setupBoot},
		{"pxe", d.setupPXE},
		{"netconsole", d.setupNetconsole},
		{"rbd", d.setupRBD},
		{"initramfs", d.setupInitramfs},
		{"dashboard", d.setupDashboard},
		{"http", d.setupHTTP},
	}
	for _, s := range steps {
		if err := s.setup(ctx); err != nil {
			d.shutdown()
			return nil, fmt.Errorf("set up %s: %w", s.name, err)
		}
	}
	return d, nil
}

// setupHTTP mounts the API and /metrics and adds the HTTP listener.
func (d *daemon) setupHTTP(context.Context) error {
	apiServer := api.New(api.Config{
		Inventory: d.cfg, Store: d.store, Deps: d.apiDeps, Log: d.log.Named("api"), Clock: d.clock, Metrics: d.registry,
	})
	d.mux.Handle("/api/", apiServer)
	d.mux.Handle("GET /metrics", promhttp.HandlerFor(d.registry, promhttp.HandlerOpts{Registry: d.registry}))
	ln, err := net.Listen("tcp", d.cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", d.cfg.HTTP.Listen, err)
	}
	srv := &http.Server{Handler: d.mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: zap.NewStdLog(d.log.Named("http"))}
	d.log.Info("http: listening", zap.Stringer("addr", ln.Addr()))
	d.services = append(d.services, service{
		name: "http",
		serve: func(ctx context.Context) error {
			go func() {
				<-ctx.Done()
				shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(shutdownCtx)
			}()
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	})
	return nil
}

// run serves every service until ctx is done or one fails, then shuts all
// of them down.
func (d *daemon) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(d.services))
	var wg sync.WaitGroup
	for _, s := range d.services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.serve(ctx); err != nil {
				errs <- fmt.Errorf("%s: %w", s.name, err)
				cancel()
			}
		}()
	}
	d.log.Info("netbootd: started", zap.Int("services", len(d.services)), zap.Int("hosts", len(d.cfg.Hosts)))
	<-ctx.Done()
	for _, s := range d.services {
		if s.close != nil {
			if err := s.close(); err != nil {
				d.log.Warn("netbootd: closing service failed", zap.String("service", s.name), zap.Error(err))
			}
		}
	}
	wg.Wait()
	d.shutdown()
	close(errs)
	var first error
	for err := range errs {
		d.log.Error("netbootd: service failed", zap.Error(err))
		if first == nil {
			first = err
		}
	}
	d.log.Info("netbootd: stopped")
	return first
}

func (d *daemon) shutdown() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		if err := d.closers[i](); err != nil {
			d.log.Warn("netbootd: shutdown step failed", zap.Error(err))
		}
	}
	d.closers = nil
}

func newLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Encoding = "console"
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	cfg.EncoderConfig.EncodeLevel = zapcore.CapitalLevelEncoder
	cfg.Sampling = nil
	return cfg.Build()
}
