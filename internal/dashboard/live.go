package dashboard

import (
	"encoding/json"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	"netboot/internal/boot"
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
	// Signatures is the catalogue as JSON for live.js, which marks new
	// lines that match; the backlog is marked here.
	Signatures string
}

// livePattern is one signature as live.js needs it.
type livePattern struct {
	Name    string `json:"name"`
	Pattern string `json:"pattern"`
	Fatal   bool   `json:"fatal"`
}

// signaturesJSON renders the catalogue for the browser. Go's RE2 syntax
// is, for these patterns, also JavaScript's; live.js skips any pattern its
// RegExp rejects.
func signaturesJSON(cat *boot.Catalogue) string {
	var out []livePattern
	if cat != nil {
		for _, sig := range cat.Signatures() {
			out = append(out, livePattern{Name: sig.Name, Pattern: sig.Pattern(), Fatal: sig.Fatal})
		}
	}
	b, _ := json.Marshal(out)
	return string(b)
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
	d := liveData{Name: name, StreamURL: s.streamURL(name), Key: keyNone, Stage: "–", Signatures: s.sigJSON}
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
		row := logRow{Time: formatLogTime(l), Level: levelName(l.Level), Text: l.Text,
			Key: strconv.FormatInt(l.Time.UnixMilli(), 10) + "|" + strconv.FormatInt(l.Seq, 10) + "|" + l.Text}
		if s.cfg.Catalogue != nil {
			if sig, ok := s.cfg.Catalogue.Match(l.Text); ok {
				row.Signature, row.Fatal = sig.Name, sig.Fatal
			}
		}
		rows = append(rows, row)
	}
	return rows, ""
}
