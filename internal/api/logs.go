package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"netboot/internal/store"
)

// LogService is what the log routes need from netconsole
// (netconsole.Service implements it).
type LogService interface {
	QueryLogs(ctx context.Context, q store.LogQuery) ([]store.LogLine, error)
	LogBoots(ctx context.Context, host string) ([]store.LogBoot, error)
	// FollowLogs delivers host's lines as they arrive until stop is called;
	// dropped counts lines the follower missed by being slow.
	FollowLogs(host string) (lines <-chan store.LogLine, dropped func() int64, stop func())
}

// Log routes:
//
//	GET /api/v1/hosts/{name}/logs        lines as JSON lines (application/x-ndjson)
//	    ?boot=N       boot id; 0 or absent: the latest boot; -N: N boots before the latest; "all"
//	    ?since=T      RFC 3339 time or a duration back from now ("10m")
//	    ?grep=RE      regular expression over the line text
//	    ?level=L      keep lines of level L or more severe (0-7 or emerg…debug)
//	    ?limit=N      the last N lines only
//	    ?follow=1     Server-Sent Events: the matching history, then live lines
//	GET /api/v1/hosts/{name}/logs/boots  boots with stored lines, oldest first
//
// {name} is an inventory host or "unknown:<ip>" for sources the inventory
// does not know.
func (s *Server) logRoutes() {
	s.handle("GET /api/v1/hosts/{name}/logs", s.getLogs)
	s.handle("GET /api/v1/hosts/{name}/logs/boots", s.getLogBoots)
}

// logHost validates the host in the path: inventory hosts and unknown:<ip>.
func (s *Server) logHost(w http.ResponseWriter, r *http.Request) (string, bool) {
	if s.cfg.Deps.Logs == nil {
		unavailable(w, "netconsole")
		return "", false
	}
	name := r.PathValue("name")
	if strings.HasPrefix(name, "unknown:") {
		return name, true
	}
	h, ok := s.host(w, r)
	if !ok {
		return "", false
	}
	return h.Name, true
}

func (s *Server) getLogBoots(w http.ResponseWriter, r *http.Request) {
	host, ok := s.logHost(w, r)
	if !ok {
		return
	}
	boots, err := s.cfg.Deps.Logs.LogBoots(r.Context(), host)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "reading log boots failed", err.Error())
		return
	}
	if boots == nil {
		boots = []store.LogBoot{}
	}
	writeJSON(w, http.StatusOK, boots)
}

func (s *Server) getLogs(w http.ResponseWriter, r *http.Request) {
	host, ok := s.logHost(w, r)
	if !ok {
		return
	}
	q, err := s.logQuery(r, host)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad log query", err.Error())
		return
	}
	follow := r.URL.Query().Get("follow")
	if follow == "1" || follow == "true" {
		s.followLogs(w, r, q)
		return
	}
	lines, err := s.cfg.Deps.Logs.QueryLogs(r.Context(), q)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "reading logs failed", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	for i := range lines {
		if err := enc.Encode(&lines[i]); err != nil {
			return
		}
	}
}

// logQuery turns the URL parameters into a store query, resolving the
// boot selector against the host's stored boots.
func (s *Server) logQuery(r *http.Request, host string) (store.LogQuery, error) {
	v := r.URL.Query()
	q := store.LogQuery{Host: host}
	var err error
	if q.BootID, err = s.resolveBoot(r.Context(), host, v.Get("boot")); err != nil {
		return q, err
	}
	if q.Since, err = parseSinceParam(v.Get("since"), s.cfg.Clock.Now()); err != nil {
		return q, err
	}
	if g := v.Get("grep"); g != "" {
		re, err := regexp.Compile(g)
		if err != nil {
			return q, fmt.Errorf("grep: %w", err)
		}
		q.Match = re.MatchString
	}
	if l := v.Get("level"); l != "" {
		lvl, err := ParseLevel(l)
		if err != nil {
			return q, err
		}
		q.MaxLevel, q.HasMaxLevel = lvl, true
	}
	if l := v.Get("limit"); l != "" {
		if q.Limit, err = strconv.Atoi(l); err != nil || q.Limit < 0 {
			return q, fmt.Errorf("limit %q: want a non-negative number", l)
		}
	}
	return q, nil
}

// resolveBoot maps the boot parameter to a boot id (0: all boots).
func (s *Server) resolveBoot(ctx context.Context, host, sel string) (int64, error) {
	if sel == "all" {
		return 0, nil
	}
	n := int64(0)
	if sel != "" {
		var err error
		if n, err = strconv.ParseInt(sel, 10, 64); err != nil {
			return 0, fmt.Errorf("boot %q: want a boot id, 0 for the latest, -N for N boots before it, or all", sel)
		}
	}
	if n > 0 {
		return n, nil
	}
	boots, err := s.cfg.Deps.Logs.LogBoots(ctx, host)
	if err != nil {
		return 0, fmt.Errorf("boot: %w", err)
	}
	i := len(boots) - 1 + int(n)
	if len(boots) == 0 || i < 0 {
		if n == 0 {
			return -1, nil // no boots: nothing matches, follow shows new ones
		}
		return 0, fmt.Errorf("boot %d: %s has %d boots with logs", n, host, len(boots))
	}
	return boots[i].BootID, nil
}

// logLevels are the syslog level names, by number.
var logLevels = []string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

// ParseLevel accepts 0-7 or a syslog level name (emerg … debug; "error"
// and "warn" too).
func ParseLevel(s string) (int8, error) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n <= 7 {
		return int8(n), nil
	}
	switch strings.ToLower(s) {
	case "error":
		return 3, nil
	case "warn":
		return 4, nil
	}
	for i, name := range logLevels {
		if strings.EqualFold(s, name) {
			return int8(i), nil
		}
	}
	return 0, fmt.Errorf("level %q: want 0-7 or one of %s", s, strings.Join(logLevels, ", "))
}

func parseSinceParam(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("since %q: want a duration like 10m or an RFC 3339 time", v)
	}
	return t, nil
}

// followLogs streams the matching history, then live lines, as
// Server-Sent Events ("event: line"; "event: lagged" when lines were
// missed). Live lines of later boots are included: following a host keeps
// showing it across reboots.
func (s *Server) followLogs(w http.ResponseWriter, r *http.Request, q store.LogQuery) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming unsupported", "")
		return
	}
	live, dropped, stop := s.cfg.Deps.Logs.FollowLogs(q.Host)
	defer stop()
	history, err := s.cfg.Deps.Logs.QueryLogs(r.Context(), q)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "reading logs failed", err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	var last time.Time
	for i := range history {
		writeEvent(w, "line", &history[i])
		last = history[i].Time
	}
	fl.Flush()
	s.log.Debug("api: following logs", zap.String("host", q.Host), zap.Int("history", len(history)))
	s.streamLive(r.Context(), w, fl, q, live, dropped, last)
}

func (s *Server) streamLive(ctx context.Context, w http.ResponseWriter, fl http.Flusher, q store.LogQuery,
	live <-chan store.LogLine, dropped func() int64, last time.Time) {
	keepalive := make(chan struct{}, 1)
	var tick func()
	tick = func() {
		select {
		case keepalive <- struct{}{}:
		default:
		}
	}
	timer := s.cfg.Clock.AfterFunc(15*time.Second, tick)
	defer func() { timer.Stop() }()
	var lagged int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-keepalive:
			fmt.Fprint(w, ": keepalive\n\n")
			fl.Flush()
			timer = s.cfg.Clock.AfterFunc(15*time.Second, tick)
		case l, ok := <-live:
			if !ok {
				return
			}
			if !l.Time.After(last) || !liveMatch(&l, q) {
				continue
			}
			if d := dropped(); d > lagged {
				fmt.Fprintf(w, "event: lagged\ndata: {\"dropped\":%d}\n\n", d)
				lagged = d
			}
			writeEvent(w, "line", &l)
			if len(live) == 0 {
				fl.Flush()
			}
		}
	}
}

// liveMatch applies the text and level filters to a live line (boot and
// since are history filters).
func liveMatch(l *store.LogLine, q store.LogQuery) bool {
	if q.HasMaxLevel && (l.Level < 0 || l.Level > q.MaxLevel) {
		return false
	}
	return q.Match == nil || q.Match(l.Text)
}

func writeEvent(w http.ResponseWriter, name string, v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b)
}
