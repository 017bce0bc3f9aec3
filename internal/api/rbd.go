package api

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strconv"

	"go.uber.org/zap"

	"netboot/internal/store"
	"netboot/rbd"
)

// RootService is what the root hand-over routes need from rbd/
// (*rbd.Service implements it). Owned by the rbd part.
type RootService interface {
	Prepare(ctx context.Context, host string, caller netip.Addr) (rbd.PrepareAnswer, error)
	Mapped(ctx context.Context, host string, caller netip.Addr, rep rbd.MappedReport) (store.RBDClient, error)
	Status(ctx context.Context, host string) (rbd.Status, error)
	Plan(ctx context.Context, host string) (rbd.PlanView, error)
}

// rbdRoutes registers the RBD root hand-over routes:
//
//	POST /api/v1/hosts/{name}/root/prepare  nbinit, from the host's own IP while it boots
//	POST /api/v1/hosts/{name}/root/mapped   nbinit, after mapping: {"client_addr","client_id","device"}
//	GET  /api/v1/hosts/{name}/rbd           status: lock, watchers, blocklist entries, recorded client
//	GET  /api/v1/hosts/{name}/rbd/plan      dry run: what prepare would do, changing nothing
//
// The two POSTs are bound to the caller's address (not to the API token:
// rule 1 says nothing is broken unless the request comes from the host).
func (s *Server) rbdRoutes() {
	s.handle("POST /api/v1/hosts/{name}/root/prepare", s.rootPrepare)
	s.handle("POST /api/v1/hosts/{name}/root/mapped", s.rootMapped)
	s.handle("GET /api/v1/hosts/{name}/rbd", s.rbdStatus)
	s.handle("GET /api/v1/hosts/{name}/rbd/plan", s.rbdPlan)
}

// refusalBody is a refused prepare's answer.
type refusalBody struct {
	Error   string      `json:"error"`
	Reason  string      `json:"reason"`
	Refusal rbd.Refusal `json:"refusal"`
	Result  rbd.Result  `json:"result"`
}

func (s *Server) rootService(w http.ResponseWriter) (RootService, bool) {
	if s.cfg.Deps.Root == nil {
		unavailable(w, "ceph")
		return nil, false
	}
	return s.cfg.Deps.Root, true
}

func (s *Server) rootPrepare(w http.ResponseWriter, r *http.Request) {
	svc, ok := s.rootService(w)
	if !ok {
		return
	}
	name := r.PathValue("name")
	ans, err := svc.Prepare(r.Context(), name, remoteIP(r))
	var refused *rbd.RefusedError
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, ans)
	case errors.As(err, &refused):
		status := http.StatusConflict
		if refused.Refusal.Reason == rbd.ReasonWrongCaller {
			status = http.StatusForbidden
		}
		writeJSON(w, status, refusalBody{Error: err.Error(), Reason: string(refused.Refusal.Reason), Refusal: refused.Refusal, Result: ans.Result})
	default:
		s.rbdError(w, r, name, err)
	}
}

// rbdError maps service errors: unknown host 404, no image 409, bad report
// 400, Ceph trouble 503 with Retry-After (nbinit retries with backoff).
func (s *Server) rbdError(w http.ResponseWriter, r *http.Request, host string, err error) {
	switch {
	case errors.Is(err, rbd.ErrUnknownHost):
		writeError(w, http.StatusNotFound, "unknown host", host)
	case errors.Is(err, rbd.ErrNoImage):
		writeError(w, http.StatusConflict, err.Error(), "set hosts[].rbd.pool and image")
	case errors.Is(err, rbd.ErrBadReport):
		writeError(w, http.StatusBadRequest, err.Error(), "bad-report")
	case errors.Is(err, rbd.ErrNotFound):
		writeError(w, http.StatusConflict, err.Error(), "image-missing")
	default:
		s.log.Warn("api: rbd call failed", zap.String("host", host), zap.String("path", r.URL.Path), zap.Error(err))
		w.Header().Set("Retry-After", "2")
		writeError(w, http.StatusServiceUnavailable, err.Error(), string(rbd.ReasonCephError))
	}
}

func (s *Server) rootMapped(w http.ResponseWriter, r *http.Request) {
	svc, ok := s.rootService(w)
	if !ok {
		return
	}
	h, ok := s.host(w, r)
	if !ok || !s.requireHostAddr(h.Name, w, r) {
		return
	}
	var rep rbd.MappedReport
	if err := decodeJSON(w, r, &rep); err != nil {
		writeError(w, http.StatusBadRequest, "bad request body", err.Error())
		return
	}
	c, err := svc.Mapped(r.Context(), h.Name, remoteIP(r), rep)
	if err != nil {
		s.rbdError(w, r, h.Name, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// requireHostAddr: the caller's IP is the host's configured IP or one its
// leases map to it. Unlike requireHost, the API token does not replace it.
func (s *Server) requireHostAddr(name string, w http.ResponseWriter, r *http.Request) bool {
	h, _ := s.cfg.Inventory.HostByName(name)
	ip := remoteIP(r)
	if a, ok := h.Addr(); ok && a == ip {
		return true
	}
	if s.cfg.Deps.Leases != nil {
		if owner, ok := s.cfg.Deps.Leases.HostByIP(ip); ok && owner == name {
			return true
		}
	}
	s.log.Warn("api: refused host-bound rbd call from another address", zap.String("host", name), zap.Stringer("remote", ip))
	writeError(w, http.StatusForbidden, "this endpoint only answers the host itself", "request from "+ip.String()+" is not "+name+"'s address")
	return false
}

func (s *Server) rbdStatus(w http.ResponseWriter, r *http.Request) {
	svc, ok := s.rootService(w)
	if !ok {
		return
	}
	name := r.PathValue("name")
	st, err := svc.Status(r.Context(), name)
	if err != nil {
		s.rbdError(w, r, name, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) rbdPlan(w http.ResponseWriter, r *http.Request) {
	svc, ok := s.rootService(w)
	if !ok {
		return
	}
	name := r.PathValue("name")
	p, err := svc.Plan(r.Context(), name)
	if err != nil {
		s.rbdError(w, r, name, err)
		return
	}
	w.Header().Set("X-Netboot-Dry-Run", strconv.FormatBool(true))
	writeJSON(w, http.StatusOK, p)
}
