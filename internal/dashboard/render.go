package dashboard

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// pageNames are the templates in templates/, each rendered with layout.html.
var pageNames = []string{"overview", "host", "boot", "live", "notfound"}

func parsePages() (map[string]*template.Template, error) {
	pages := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS,
			"templates/layout.html", "templates/parts.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("parse template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

var funcs = template.FuncMap{
	"dur":      formatMS,
	"ts":       formatTime,
	"iso":      func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
	"pathEsc":  urlPathEscape,
	"outcome":  outcomeBadge,
	"ok":       okBadge,
	"levelTag": levelName,
	// contains reports whether s contains a non-empty sub.
	"contains": func(s, sub string) bool { return sub != "" && strings.Contains(s, sub) },
}

// httpError is an error with the status it answers.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func notFound(msg string) error   { return &httpError{http.StatusNotFound, msg} }
func badRequest(msg string) error { return &httpError{http.StatusBadRequest, msg} }

// layoutData wraps every page's data with what the layout needs.
type layoutData struct {
	Title   string
	Refresh int // <meta refresh> seconds, 0: none
	Page    string
	Now     time.Time
	Data    any
	Error   string
}

// titled is implemented by page data that names its page.
type titled interface{ title() string }

// page wraps a page builder: build the data, render it into a buffer (so
// that a failed render answers a clean 500), count and log the result.
func (s *Server) page(name string, build func(*http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		status, tmpl := http.StatusOK, name
		data, err := build(r)
		ld := layoutData{Page: name, Now: s.cfg.Clock.Now(), Data: data}
		if t, ok := data.(titled); ok {
			ld.Title = t.title()
		}
		if r, ok := data.(interface{ refreshSeconds() int }); ok {
			ld.Refresh = r.refreshSeconds()
		}
		if err != nil {
			status, tmpl = errorStatus(err), "notfound"
			ld.Title, ld.Error, ld.Data = http.StatusText(status), err.Error(), nil
			s.logFailure(name, r, status, err)
		}
		var buf bytes.Buffer
		if err := s.pages[tmpl].Execute(&buf, ld); err != nil {
			status = http.StatusInternalServerError
			s.logFailure(name, r, status, fmt.Errorf("render %s: %w", name, err))
			buf.Reset()
			buf.WriteString("<!doctype html><title>error</title><h1>Rendering failed</h1>")
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:")
		w.WriteHeader(status)
		_, _ = w.Write(buf.Bytes())
		elapsed := time.Since(start)
		s.metrics.observe(name, status, elapsed)
		s.log.Debug("dashboard: page served", zap.String("page", name), zap.String("path", r.URL.Path),
			zap.Int("status", status), zap.Duration("took", elapsed))
	}
}

func errorStatus(err error) int {
	var he *httpError
	if errors.As(err, &he) {
		return he.status
	}
	return http.StatusInternalServerError
}

func (s *Server) logFailure(page string, r *http.Request, status int, err error) {
	log := s.log.Info
	if status >= 500 {
		log = s.log.Warn
	}
	log("dashboard: page not served", zap.String("page", page), zap.String("path", r.URL.Path),
		zap.Int("status", status), zap.Error(err))
}

func urlPathEscape(s string) string { return url.PathEscape(s) }

// metrics counts pages served and their render time.
type metrics struct {
	pages  *prometheus.CounterVec
	render *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		pages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "netboot", Subsystem: "dashboard", Name: "pages_total",
			Help: "Dashboard pages served, by page and HTTP status code.",
		}, []string{"page", "code"}),
		render: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "netboot", Subsystem: "dashboard", Name: "render_seconds",
			Help:    "Time to build and render a dashboard page, by page.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"page"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.pages, m.render} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register dashboard metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) observe(page string, status int, took time.Duration) {
	m.pages.WithLabelValues(page, fmt.Sprint(status)).Inc()
	m.render.WithLabelValues(page).Observe(took.Seconds())
}
