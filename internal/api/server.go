// Package api serves netbootd's JSON API under /api/v1/.
//
// Each part of the service registers its routes from a file of its own
// (hosts.go, boots.go, logs.go, rbd.go, initramfs.go) through a method on
// *Server, using the dependency it declares in Deps. Conventions:
//
//   - Responses are JSON; errors are {"error": "...", "reason": "..."} with a
//     fitting status code.
//   - Mutating endpoints need "Authorization: Bearer <server.api_token>"
//     (requireToken). The endpoints nbinit calls are bound to the calling
//     host's identity instead (requireHost): the request must come from the
//     host's configured IP or the address of its current DHCP lease.
package api

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/store"
)

// Deps are the services the API exposes. A nil field turns its routes into
// 503 answers that say which part is not configured.
type Deps struct {
	Boots     BootService      // boots.go (internal/boot tracker)
	Logs      LogService       // logs.go (netconsole)
	Root      RootService      // rbd.go (RBD hand-over)
	Initramfs InitramfsService // initramfs.go (per-host images)
	// Leases maps an address to the host that holds it (DHCP leases seen,
	// addresses seen on API calls); nil means inventory IPs only.
	Leases LeaseResolver
}

// LeaseResolver tells which host an IP address belongs to, beyond the
// inventory's static IPs.
type LeaseResolver interface {
	HostByIP(ip netip.Addr) (host string, ok bool)
}

// Config configures the API server.
type Config struct {
	Inventory *config.Config // hosts, classes, api token
	Store     store.Store
	Deps      Deps
	Log       *zap.Logger           // nil: no logging
	Clock     clock.Clock           // nil: wall clock
	Metrics   prometheus.Registerer // nil: not registered
}

// Server is the API's http.Handler.
type Server struct {
	cfg Config
	log *zap.Logger
	mux *http.ServeMux
}

// New builds the API server and its routes.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	s := &Server{cfg: cfg, log: cfg.Log, mux: http.NewServeMux()}
	s.hostRoutes()
	s.bootRoutes()
	s.logRoutes()
	s.rbdRoutes()
	s.initramfsRoutes()
	s.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint", r.Method+" "+r.URL.Path)
	})
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// handle registers a route ("GET /api/v1/hosts/{name}").
func (s *Server) handle(pattern string, h http.HandlerFunc) { s.mux.HandleFunc(pattern, h) }

// errorBody is every error answer's shape.
type errorBody struct {
	Error  string `json:"error"`
	Reason string `json:"reason,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg, reason string) {
	writeJSON(w, status, errorBody{Error: msg, Reason: reason})
}

// decodeJSON reads a bounded JSON body into v, rejecting unknown fields.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New("bad request body: " + err.Error())
	}
	return nil
}

// requireToken wraps a mutating handler with the bearer-token check.
func (s *Server) requireToken(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token := s.cfg.Inventory.Server.APIToken
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if token == "" || !ok || got != token {
			s.log.Warn("api: refused unauthenticated mutating call", zap.String("path", r.URL.Path), zap.String("remote", r.RemoteAddr))
			writeError(w, http.StatusUnauthorized, "a valid bearer token is required", "set server.api_token and pass it with --token / NETBOOT_TOKEN")
			return
		}
		h(w, r)
	}
}

// host returns the inventory host named in the path, or writes 404.
func (s *Server) host(w http.ResponseWriter, r *http.Request) (*config.Host, bool) {
	name := r.PathValue("name")
	h, ok := s.cfg.Inventory.HostByName(name)
	if !ok {
		writeError(w, http.StatusNotFound, "unknown host", name)
	}
	return h, ok
}

// requireHost checks that the request comes from the named host itself: from
// its configured IP or an address its leases map to it. A request carrying
// the API token is also accepted (operators and tests).
func (s *Server) requireHost(h *config.Host, w http.ResponseWriter, r *http.Request) bool {
	if token := s.cfg.Inventory.Server.APIToken; token != "" && r.Header.Get("Authorization") == "Bearer "+token {
		return true
	}
	ip := remoteIP(r)
	if a, ok := h.Addr(); ok && a == ip {
		return true
	}
	if s.cfg.Deps.Leases != nil {
		if name, ok := s.cfg.Deps.Leases.HostByIP(ip); ok && name == h.Name {
			return true
		}
	}
	s.log.Warn("api: refused host-bound call from another address",
		zap.String("host", h.Name), zap.String("path", r.URL.Path), zap.Stringer("remote", ip))
	writeError(w, http.StatusForbidden, "this endpoint only answers the host itself", "request from "+ip.String()+" is not "+h.Name+"'s address")
	return false
}

func remoteIP(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// unavailable answers 503 for a part that is not configured.
func unavailable(w http.ResponseWriter, part string) {
	writeError(w, http.StatusServiceUnavailable, part+" is not enabled on this server", "see the "+part+" section of the configuration")
}
