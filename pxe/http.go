package pxe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/event"
)

// ArtifactOpener resolves a request against the artifact tree; *Artifacts
// (artifacts.go) is the implementation.
type ArtifactOpener interface {
	Open(Request) (*Artifact, error)
}

// InitrdProvider returns the path of a host's assembled nbinit initramfs
// (the initramfs part implements it). The file is served with sendfile.
type InitrdProvider interface {
	InitrdPath(ctx context.Context, h *config.Host) (string, error)
}

// HTTPConfig configures the boot HTTP handler. Zero values mean defaults.
type HTTPConfig struct {
	// BaseURL is the HTTP listener as hosts reach it, used in iPXE scripts.
	// Default http://127.0.0.1:8080.
	BaseURL string
	// DefaultClass, when set (dhcp.unknown: boot), gives clients the
	// inventory does not know a script of that class at
	// /boot/mac-<mac with dashes>.ipxe, the URL DHCP hands them.
	DefaultClass string
}

// HTTPDeps are the handler's collaborators.
type HTTPDeps struct {
	Log        *zap.Logger           // default zap.NewNop()
	Clock      clock.Clock           // default clock.Real{}
	Sink       event.Sink            // default event.Discard
	Registerer prometheus.Registerer // default: a private registry
	Inventory  *Inventory            // required
	Artifacts  ArtifactOpener        // required for /files/
	Hosts      HostLookup            // client address → host; default inventory IPs
	Initrd     InitrdProvider        // nil: /boot/{host}/initrd answers 503
}

// HTTPHandler serves /boot/{host}.ipxe (per-host iPXE scripts),
// /boot/{host}/initrd (the host's nbinit image) and /files/<path>
// (artifacts, with Range, sendfile for plain files). Every httpTransfer is an
// event attributed to the host (by the name in the URL, the Pi prefix of
// the path, or the client's address), a log line and a metric.
type HTTPHandler struct {
	cfg     HTTPConfig
	d       HTTPDeps
	mux     *http.ServeMux
	metrics *FileMetrics
}

// NewHTTP builds the handler; mount it at /boot/ and /files/.
func NewHTTP(cfg HTTPConfig, deps HTTPDeps) (*HTTPHandler, error) {
	if deps.Inventory == nil {
		return nil, errors.New("new http handler: no inventory")
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = "http://127.0.0.1:8080"
	}
	if deps.Log == nil {
		deps.Log = zap.NewNop()
	}
	if deps.Clock == nil {
		deps.Clock = clock.Real{}
	}
	if deps.Sink == nil {
		deps.Sink = event.Discard
	}
	if deps.Registerer == nil {
		deps.Registerer = prometheus.NewRegistry()
	}
	if deps.Hosts == nil {
		deps.Hosts = InventoryHosts(deps.Inventory.Config())
	}
	h := &HTTPHandler{cfg: cfg, d: deps, mux: http.NewServeMux(), metrics: NewFileMetrics(deps.Registerer)}
	h.mux.HandleFunc("GET /boot/{file}", h.serveScript)
	h.mux.HandleFunc("GET /boot/{host}/initrd", h.serveInitrd)
	h.mux.HandleFunc("GET /files/{path...}", h.serveFile)
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *HTTPHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// httpTransfer is one request's facts, reported when it ends.
type httpTransfer struct {
	kind   string // script, initrd, file
	file   string
	host   string
	known  bool
	role   Role
	status int
	bytes  int64
	size   int64 // full size of the file; -1 unknown
	err    string
	start  time.Time
	client netip.Addr
}

func (h *HTTPHandler) begin(r *http.Request, kind, file string) *httpTransfer {
	return &httpTransfer{kind: kind, file: file, start: h.d.Clock.Now(), client: httpClientAddr(r), size: -1, role: RoleOther}
}

func (h *HTTPHandler) serveScript(w http.ResponseWriter, r *http.Request) {
	t := h.begin(r, "script", r.URL.Path)
	t.role = RoleConfig
	name, ok := strings.CutSuffix(r.PathValue("file"), ".ipxe")
	host, found := h.d.Inventory.ByName(name)
	if !found {
		host, found = h.unknownHost(name)
	}
	switch {
	case !ok:
		h.fail(w, r, t, http.StatusNotFound, "not an iPXE script name (want /boot/{host}.ipxe)")
		return
	case !found:
		t.host = "unknown:" + name
		h.fail(w, r, t, http.StatusNotFound, fmt.Sprintf("no host %q in the inventory", name))
		return
	}
	t.host, t.known = host.Name, true
	if mac, unknown := parseUnknownHostName(host.Name); unknown && host.MAC == mac.String() {
		t.host, t.known = "unknown:"+host.MAC, false
	}
	script, err := Script(h.d.Inventory.Config(), host, h.cfg.BaseURL)
	if err != nil {
		h.fail(w, r, t, http.StatusInternalServerError, err.Error())
		return
	}
	t.size = int64(len(script))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	h.send(w, r, t, func(cw *httpCountingWriter) {
		http.ServeContent(cw, r, "", time.Time{}, strings.NewReader(string(script)))
	})
}

// unknownHost is the stand-in host of an unknown client booting the
// default class (dhcp.unknown: boot).
func (h *HTTPHandler) unknownHost(name string) (*config.Host, bool) {
	mac, ok := parseUnknownHostName(name)
	if !ok || h.cfg.DefaultClass == "" {
		return nil, false
	}
	cl, ok := h.d.Inventory.Config().Classes[h.cfg.DefaultClass]
	if !ok {
		return nil, false
	}
	return &config.Host{Name: name, MAC: mac.String(), Class: h.cfg.DefaultClass, Arch: cl.Arch}, true
}

func (h *HTTPHandler) serveInitrd(w http.ResponseWriter, r *http.Request) {
	t := h.begin(r, "initrd", r.URL.Path)
	t.role = RoleInitramfs
	host, found := h.d.Inventory.ByName(r.PathValue("host"))
	if !found {
		t.host = "unknown:" + r.PathValue("host")
		h.fail(w, r, t, http.StatusNotFound, fmt.Sprintf("no host %q in the inventory", r.PathValue("host")))
		return
	}
	t.host, t.known = host.Name, true
	if h.d.Initrd == nil {
		h.fail(w, r, t, http.StatusServiceUnavailable, "per-host initramfs images are not configured")
		return
	}
	p, err := h.d.Initrd.InitrdPath(r.Context(), host)
	if err != nil {
		h.fail(w, r, t, http.StatusServiceUnavailable, fmt.Sprintf("assemble initramfs: %v", err))
		return
	}
	f, err := os.Open(p)
	if err != nil {
		h.fail(w, r, t, http.StatusInternalServerError, fmt.Sprintf("open initramfs: %v", err))
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		h.fail(w, r, t, http.StatusInternalServerError, fmt.Sprintf("stat initramfs: %v", err))
		return
	}
	t.size = fi.Size()
	w.Header().Set("Content-Type", "application/octet-stream")
	h.send(w, r, t, func(cw *httpCountingWriter) { http.ServeContent(cw, r, "", fi.ModTime(), f) })
}

func (h *HTTPHandler) serveFile(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("path")
	t := h.begin(r, "file", name)
	t.role = ClassifyRole(name, nil)
	if h.d.Artifacts == nil {
		h.fail(w, r, t, http.StatusServiceUnavailable, "no artifact tree configured")
		return
	}
	art, err := h.d.Artifacts.Open(Request{Path: name, Client: t.client, PreferFile: true})
	if err != nil {
		h.attribute(t, nil)
		status := http.StatusInternalServerError
		switch {
		case errors.Is(err, ErrNotFound):
			status = http.StatusNotFound
		case errors.Is(err, ErrForbidden):
			status = http.StatusForbidden
		}
		h.fail(w, r, t, status, err.Error())
		return
	}
	defer art.Close()
	h.attribute(t, art.Host)
	t.role, t.size, t.file = art.Role, art.Size, art.Name
	w.Header().Set("Content-Type", "application/octet-stream")
	h.send(w, r, t, func(cw *httpCountingWriter) { http.ServeContent(cw, r, "", art.ModTime, art.ReadSeeker()) })
}

// attribute names the host a file request comes from: the artifact
// resolver's answer (Pi prefix or address), else the address lookup.
func (h *HTTPHandler) attribute(t *httpTransfer, host *config.Host) {
	if host == nil && t.client.IsValid() {
		host, _ = h.d.Hosts.HostByIP(t.client)
	}
	t.host, t.known = HostName(host, t.client), host != nil
}

// send serves the body through a counting writer (which keeps sendfile)
// and reports the httpTransfer.
func (h *HTTPHandler) send(w http.ResponseWriter, r *http.Request, t *httpTransfer, serve func(*httpCountingWriter)) {
	cw := &httpCountingWriter{ResponseWriter: w, status: http.StatusOK}
	serve(cw)
	t.status, t.bytes = cw.status, cw.n
	h.report(r, t)
}

// fail answers an error and reports the failed httpTransfer.
func (h *HTTPHandler) fail(w http.ResponseWriter, r *http.Request, t *httpTransfer, status int, msg string) {
	if t.host == "" {
		h.attribute(t, nil)
	}
	t.status, t.err = status, msg
	http.Error(w, msg, status)
	h.report(r, t)
}

// report logs, counts and emits one finished httpTransfer.
func (h *HTTPHandler) report(r *http.Request, t *httpTransfer) {
	result := httpResult(r, t)
	h.metrics.Transfers.WithLabelValues("http", result).Inc()
	h.metrics.Bytes.WithLabelValues("http").Add(float64(t.bytes))
	dur := h.d.Clock.Now().Sub(t.start)
	fields := []zap.Field{zap.String("host", t.host), zap.String("client", addrString(t.client)), zap.String("method", r.Method),
		zap.String("path", r.URL.Path), zap.String("file", t.file), zap.String("role", string(t.role)), zap.Int("status", t.status),
		zap.Int64("bytes", t.bytes), zap.Duration("duration", dur), zap.String("result", result)}
	if t.err != "" {
		fields = append(fields, zap.String("error", t.err))
	}
	if result == "ok" || result == "partial" {
		h.d.Log.Info("http: served", fields...)
	} else {
		h.d.Log.Warn("http: httpTransfer failed", fields...)
	}
	if r.Method == http.MethodHead {
		return
	}
	h.d.Sink.Emit(h.eventOf(t, result, dur))
}

func (h *HTTPHandler) eventOf(t *httpTransfer, result string, dur time.Duration) event.Event {
	ev := event.Event{Time: h.d.Clock.Now(), Host: t.host, Kind: event.FileFetched, Attrs: map[string]string{
		"proto": "http", "file": t.file, "bytes": strconv.FormatInt(t.bytes, 10), "duration_ms": strconv.FormatInt(dur.Milliseconds(), 10),
		"role": string(t.role), "status": strconv.Itoa(t.status), "result": result, "client": addrString(t.client),
	}}
	stage := t.role.Stage()
	if t.kind == "script" {
		// Fetching its script proves the bootloader (iPXE) runs.
		stage = event.StageFirmware
	}
	switch result {
	case "ok":
		ev.Stage = stage
	case "partial", "not-modified":
		// A range or cached answer proves nothing about the boot.
	default:
		// A known host's failed fetch of a boot file fails its stage; an
		// unknown client's, or a bad range, names no stage (it must not
		// open or fail a boot attempt).
		ev.Kind, ev.Message = event.FileFailed, t.err
		if t.known && stage != event.StageNone && (result != "client-error" || t.status == http.StatusOK) {
			ev.Stage, ev.Failed = stage, true
		}
	}
	return ev
}

// httpResult classifies a finished httpTransfer: ok (the whole file), partial
// (a Range answer), not-modified, aborted (the client went away), or the
// error class.
func httpResult(r *http.Request, t *httpTransfer) string {
	switch {
	case t.status == http.StatusOK && (r.Method == http.MethodHead || t.size < 0 || t.bytes == t.size):
		return "ok"
	case t.status == http.StatusOK:
		return "client-error" // the client went away mid-transfer
	case t.status == http.StatusPartialContent:
		return "partial"
	case t.status == http.StatusNotModified:
		return "not-modified"
	case t.status == http.StatusNotFound:
		return "not-found"
	case t.status == http.StatusForbidden:
		return "refused"
	case t.status == http.StatusRequestedRangeNotSatisfiable:
		return "client-error"
	case t.status == http.StatusServiceUnavailable:
		return "unavailable"
	}
	return "failed"
}

// httpCountingWriter counts body bytes and keeps the status. It implements
// io.ReaderFrom so that http.ServeContent on an *os.File still reaches the
// connection's sendfile path.
type httpCountingWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (c *httpCountingWriter) WriteHeader(code int) {
	c.status = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *httpCountingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

// ReadFrom hands the copy to the underlying writer (sendfile for files).
func (c *httpCountingWriter) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		n, err := rf.ReadFrom(r)
		c.n += n
		return n, err
	}
	n, err := io.Copy(struct{ io.Writer }{c.ResponseWriter}, r)
	c.n += n
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer.
func (c *httpCountingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func httpClientAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}
