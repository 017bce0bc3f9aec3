package dashboard

import (
	"net/http"
	"strconv"

	"go.uber.org/zap"

	"netboot/internal/store"
)

// liveData is the live log view. Its backlog is rendered on the server;
// static/live.js follows StreamURL (the API's SSE stream) and filters.
type liveData struct {
	Name      string
	StreamURL string
	BootID    int64
	Seq       int
	Key       string
	Stage     string
	Backlog   []logRow
	Note      string
}

func (d liveData) title() string { return d.Name + " live log" }

func (s *Server) livePage(r *http.Request) (any, error) {
	name := r.PathValue("name")
	_, known := s.cfg.Inventory.HostByName(name)
	boots, err := s.cfg.Boots.ListBoots(r.Context(), name, 1)
	if err != nil {
		return nil, err
	}
	if !known && len(boots) == 0 {
		return nil, notFound("unknown host " + quote(name))
	}
	d := liveData{Name: name, StreamURL: s.streamURL(name), Key: keyNone, Stage: "–"}
	if len(boots) > 0 {
		b := boots[0]
		d.BootID, d.Seq, d.Key, d.Stage = b.ID, b.Seq, outcomeKey(b.Outcome, b.Reason), stageName(b.Stage)
	}
	d.Backlog, d.Note = s.backlog(r, name, d.BootID)
	return d, nil
}

// backlog is the newest lines of the host's latest boot.
func (s *Server) backlog(r *http.Request, host string, bootID int64) ([]logRow, string) {
	if s.cfg.Logs == nil {
		return nil, "no log store configured; only new lines will appear"
	}
	lines, err := s.cfg.Logs.QueryLogs(r.Context(), store.LogQuery{Host: host, BootID: bootID, Limit: s.cfg.LiveLines})
	if err != nil {
		s.log.Warn("dashboard: reading the live view's backlog failed", zap.String("host", host), zap.Error(err))
		return nil, "reading earlier lines failed: " + err.Error()
	}
	rows := make([]logRow, 0, len(lines))
	for _, l := range lines {
		rows = append(rows, logRow{Time: formatLogTime(l), Level: levelName(l.Level), Text: l.Text,
			Key: strconv.FormatInt(l.Time.UnixMilli(), 10) + "|" + strconv.FormatInt(l.Seq, 10) + "|" + l.Text})
	}
	return rows, ""
}
