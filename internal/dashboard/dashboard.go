// Package dashboard serves netbootd's read-only web dashboard at "/": the
// hosts overview, a page per host (boot history as timeline bars, RBD
// actions, smoke results against the baseline), a page per boot (the full
// report and its netconsole log with stage markers and signature lines) and
// a live log view that follows a host through the API's SSE stream.
//
// Pages are rendered on the server with html/template from assets embedded
// in the binary (no CDN, no external fonts); the overview, host and boot
// pages work without JavaScript, only the live view needs it. Nothing here
// changes state: every mutating action stays behind the API's bearer token.
//
// The dashboard reads boots through the small BootReader interface (the
// store's boots), decodes each boot's persisted report (internal/boot
// Report, store.Boot.State) and reads logs through LogReader. The overview
// costs one query (LatestBoots) whatever the number of hosts.
package dashboard

import (
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"netboot/internal/boot"
	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// BootReader is the part of the store the dashboard reads boots from.
type BootReader interface {
	GetBoot(ctx context.Context, id int64) (store.Boot, error)
	// ListBoots returns a host's boots, newest first.
	ListBoots(ctx context.Context, host string, limit int) ([]store.Boot, error)
	// LatestBoots returns the newest boot of every host, in one query.
	LatestBoots(ctx context.Context) (map[string]store.Boot, error)
}

// LogReader is the part of the log store the boot page reads.
type LogReader interface {
	QueryLogs(ctx context.Context, q store.LogQuery) ([]store.LogLine, error)
}

// Defaults of Config's zero values.
const (
	DefaultHistory   = 50
	DefaultLogLines  = 5000
	DefaultLiveLines = 200
	// DefaultStreamURL is the API's SSE log stream; {name} is the host.
	DefaultStreamURL = "/api/v1/hosts/{name}/logs?follow=1"
)

// Config configures the dashboard. Zero values mean the documented defaults.
type Config struct {
	Inventory *config.Config // hosts and classes; required
	Boots     BootReader     // required
	// Logs reads netconsole lines for the boot page and the live view's
	// backlog; nil shows "no log store".
	Logs LogReader
	// History is how many boots the host page shows (default DefaultHistory).
	History int
	// LogLines bounds the lines on a boot page (default DefaultLogLines).
	LogLines int
	// LiveLines is the backlog rendered into the live view (default DefaultLiveLines).
	LiveLines int
	// Catalogue marks the lines matching a failure signature in the live
	// view (the same catalogue the tracker uses: boot.NewCatalogue over the
	// config's signatures); nil marks none.
	Catalogue *boot.Catalogue
	// StreamURL is the SSE URL template the live view follows (default
	// DefaultStreamURL); "{name}" is replaced by the host name.
	StreamURL string
	Log       *zap.Logger           // nil: no logging
	Clock     clock.Clock           // nil: wall clock
	Metrics   prometheus.Registerer // nil: not registered
}

func (c *Config) setDefaults() {
	if c.History <= 0 {
		c.History = DefaultHistory
	}
	if c.LogLines <= 0 {
		c.LogLines = DefaultLogLines
	}
	if c.LiveLines <= 0 {
		c.LiveLines = DefaultLiveLines
	}
	if c.StreamURL == "" {
		c.StreamURL = DefaultStreamURL
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
}

// Server is the dashboard's http.Handler. Mount it at "/" (it answers 404
// for paths it does not own) and "/static/".
type Server struct {
	cfg     Config
	log     *zap.Logger
	pages   map[string]*template.Template
	mux     *http.ServeMux
	metrics *metrics
	sigJSON string // the catalogue for live.js
}

// New parses the embedded templates and builds the routes.
func New(cfg Config) (*Server, error) {
	if cfg.Inventory == nil || cfg.Boots == nil {
		return nil, fmt.Errorf("new dashboard: Inventory and Boots are required")
	}
	cfg.setDefaults()
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("new dashboard: %w", err)
	}
	pages, err := parsePages()
	if err != nil {
		return nil, fmt.Errorf("new dashboard: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Log, pages: pages, mux: http.NewServeMux(), metrics: m, sigJSON: signaturesJSON(cfg.Catalogue)}
	s.routes()
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) routes() {
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/static/", http.FileServerFS(static))
	s.mux.Handle("GET /static/", cacheFor(time.Hour, files))
	s.mux.HandleFunc("GET /{$}", s.page("overview", s.overview))
	s.mux.HandleFunc("GET /hosts/{name}", s.page("host", s.hostPage))
	s.mux.HandleFunc("GET /hosts/{name}/live", s.page("live", s.livePage))
	s.mux.HandleFunc("GET /boots/{id}", s.page("boot", s.bootPage))
	s.mux.HandleFunc("/", s.page("notfound", func(r *http.Request) (any, error) {
		return nil, notFound("no such page: " + r.URL.Path)
	}))
}

func cacheFor(d time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(d.Seconds())))
		h.ServeHTTP(w, r)
	})
}

// streamURL is the live view's SSE URL for host.
func (s *Server) streamURL(host string) string {
	return strings.ReplaceAll(s.cfg.StreamURL, "{name}", urlPathEscape(host))
}
