package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.uber.org/zap"

	"netboot/internal/boot"
	"netboot/internal/event"
	"netboot/internal/store"
)

// BootService is what the boot routes need from the tracker
// (internal/boot.Tracker implements it). Owned by the outcomes part.
type BootService interface {
	Reports(ctx context.Context, host string, limit int) ([]boot.Report, error)
	Report(ctx context.Context, id int64) (boot.Report, error)
	Latest(ctx context.Context, host string, since time.Time) (boot.Report, error)
	Wait(ctx context.Context, host string, since time.Time) (boot.Report, error)
	WaitBoot(ctx context.Context, id int64) (boot.Report, error)
	ExpectReboot(ctx context.Context, host string, deadline time.Duration) (boot.Expectation, error)
	Record(ctx context.Context, ev event.Event) (event.Event, error)
	Deliveries(ctx context.Context, failedOnly bool, limit int) ([]store.Delivery, error)
}

// MaxWait caps the ?wait= of the long-polling boot routes.
const MaxWait = 5 * time.Minute

func (s *Server) bootRoutes() {
	s.handle("GET /api/v1/hosts/{name}/boots", s.listBoots)
	s.handle("GET /api/v1/hosts/{name}/boots/latest", s.latestBoot)
	s.handle("GET /api/v1/hosts/{name}/boots/{id}", s.getBoot)
	s.handle("POST /api/v1/hosts/{name}/reboots", s.requireToken(s.expectReboot))
	s.handle("POST /api/v1/hosts/{name}/stages", s.postStage)
	s.handle("GET /api/v1/webhooks/deliveries", s.listDeliveries)
}

// bootQuery is the parsed query of the boot routes.
type bootQuery struct {
	since time.Time     // reports that started at or after since
	wait  time.Duration // long-poll up to this long for a final outcome
	limit int
}

// parseBootQuery reads since (RFC 3339), wait (Go duration, capped at
// MaxWait) and limit.
func parseBootQuery(q url.Values) (bootQuery, error) {
	var out bootQuery
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return out, fmt.Errorf("since=%q is not an RFC 3339 time", v)
		}
		out.since = t
	}
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return out, fmt.Errorf("wait=%q is not a positive duration like 30s", v)
		}
		out.wait = min(d, MaxWait)
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return out, fmt.Errorf("limit=%q is not a count", v)
		}
		out.limit = n
	}
	return out, nil
}

// bootDeps checks the tracker is wired, the host exists and the query is
// valid.
func (s *Server) bootDeps(w http.ResponseWriter, r *http.Request) (BootService, string, bootQuery, bool) {
	svc := s.cfg.Deps.Boots
	if svc == nil {
		unavailable(w, "boot tracker")
		return nil, "", bootQuery{}, false
	}
	h, ok := s.host(w, r)
	if !ok {
		return nil, "", bootQuery{}, false
	}
	q, err := parseBootQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad query", err.Error())
		return nil, "", bootQuery{}, false
	}
	return svc, h.Name, q, true
}

func (s *Server) listBoots(w http.ResponseWriter, r *http.Request) {
	svc, host, q, ok := s.bootDeps(w, r)
	if !ok {
		return
	}
	reports, err := svc.Reports(r.Context(), host, q.limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "reading boots failed", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, reports)
}

// latestBoot answers the newest report since ?since=; with ?wait= it
// long-polls until that report has a final outcome. When the wait ends
// first it answers the report as it is (outcome in-progress), or 404 if
// no boot started since then.
func (s *Server) latestBoot(w http.ResponseWriter, r *http.Request) {
	svc, host, q, ok := s.bootDeps(w, r)
	if !ok {
		return
	}
	var rep boot.Report
	var err error
	if q.wait > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), q.wait)
		defer cancel()
		rep, err = svc.Wait(ctx, host, q.since)
		if errors.Is(err, context.DeadlineExceeded) {
			err = nil
		}
	} else {
		rep, err = svc.Latest(r.Context(), host, q.since)
	}
	s.writeReport(w, host, rep, err)
}

func (s *Server) getBoot(w http.ResponseWriter, r *http.Request) {
	svc, host, q, ok := s.bootDeps(w, r)
	if !ok {
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusBadRequest, "bad boot id", r.PathValue("id"))
		return
	}
	var rep boot.Report
	if q.wait > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), q.wait)
		defer cancel()
		rep, err = svc.WaitBoot(ctx, id)
		if errors.Is(err, context.DeadlineExceeded) {
			err = nil
		}
	} else {
		rep, err = svc.Report(r.Context(), id)
	}
	if err == nil && rep.Host != host {
		err = fmt.Errorf("boot %d is not %s's: %w", id, host, store.ErrNotFound)
	}
	s.writeReport(w, host, rep, err)
}

func (s *Server) writeReport(w http.ResponseWriter, host string, rep boot.Report, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "no such boot", err.Error())
	case err != nil:
		s.log.Error("api: reading boot report failed", zap.String("host", host), zap.Error(err))
		writeError(w, http.StatusInternalServerError, "reading boot report failed", err.Error())
	default:
		writeJSON(w, http.StatusOK, rep)
	}
}

// rebootBody is the optional body of POST /hosts/{name}/reboots.
type rebootBody struct {
	// Deadline for the reboot to start a boot attempt (Go duration);
	// default the server's (15m).
	Deadline string `json:"deadline,omitempty"`
}

func (s *Server) expectReboot(w http.ResponseWriter, r *http.Request) {
	svc := s.cfg.Deps.Boots
	if svc == nil {
		unavailable(w, "boot tracker")
		return
	}
	h, ok := s.host(w, r)
	if !ok {
		return
	}
	var body rebootBody
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &body); err != nil {
			writeError(w, http.StatusBadRequest, "bad request body", err.Error())
			return
		}
	}
	var deadline time.Duration
	if body.Deadline != "" {
		d, err := time.ParseDuration(body.Deadline)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, "bad deadline", fmt.Sprintf("%q is not a positive duration like 10m", body.Deadline))
			return
		}
		deadline = d
	}
	x, err := svc.ExpectReboot(r.Context(), h.Name, deadline)
	if err != nil {
		s.log.Error("api: announcing reboot failed", zap.String("host", h.Name), zap.Error(err))
		writeError(w, http.StatusInternalServerError, "announcing the reboot failed", err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, x)
}

// stageBody is what nbinit posts to /hosts/{name}/stages.
type stageBody struct {
	Stage   string            `json:"stage"`
	OK      bool              `json:"ok"`
	Message string            `json:"message,omitempty"`
	Attrs   map[string]string `json:"attrs,omitempty"`
}

// stageAnswer tells nbinit which boot attempt its report joined.
type stageAnswer struct {
	BootID  int64 `json:"boot_id"`
	EventID int64 `json:"event_id"`
}

func (s *Server) postStage(w http.ResponseWriter, r *http.Request) {
	svc := s.cfg.Deps.Boots
	if svc == nil {
		unavailable(w, "boot tracker")
		return
	}
	h, ok := s.host(w, r)
	if !ok || !s.requireHost(h, w, r) {
		return
	}
	var body stageBody
	if err := decodeJSON(w, r, &body); err != nil {
		writeError(w, http.StatusBadRequest, "bad request body", err.Error())
		return
	}
	stage, err := event.ParseStage(body.Stage)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad stage", err.Error())
		return
	}
	ev, err := svc.Record(r.Context(), event.Event{Host: h.Name, Kind: event.StageReport, Stage: stage, Failed: !body.OK,
		Message: body.Message, Attrs: body.Attrs})
	if err != nil {
		s.log.Error("api: recording stage failed", zap.String("host", h.Name), zap.String("stage", body.Stage), zap.Error(err))
		writeError(w, http.StatusInternalServerError, "recording the stage failed", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, stageAnswer{BootID: ev.BootID, EventID: ev.ID})
}

func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request) {
	svc := s.cfg.Deps.Boots
	if svc == nil {
		unavailable(w, "boot tracker")
		return
	}
	q, err := parseBootQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad query", err.Error())
		return
	}
	out, err := svc.Deliveries(r.Context(), r.URL.Query().Get("failed") == "true", q.limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "reading webhook deliveries failed", err.Error())
		return
	}
	if out == nil {
		out = []store.Delivery{}
	}
	writeJSON(w, http.StatusOK, out)
}
