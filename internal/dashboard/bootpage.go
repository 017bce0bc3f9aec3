package dashboard

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"netboot/internal/boot"
	"netboot/internal/store"
)

// bootData is the boot page: the full report and its log.
type bootData struct {
	bootItem
	Stages    []stageRow
	Log       []logRow
	LogNote   string // why the log is empty or cut
	LiveURL   string
	Deadlines []kv
}

func (d bootData) title() string {
	return d.Report.Host + " boot #" + strconv.Itoa(d.Report.Seq)
}

type stageRow struct {
	Stage, Via string
	At         string
	DurationMS int64
}

type kv struct{ K, V string }

// logRow is a log line, or a stage marker between lines.
type logRow struct {
	Marker    string // stage reached here ("" for a line)
	Time      string
	Level     string
	Text      string
	Signature string // name of the signature the line matched
	Fatal     bool
	// Key identifies a line in the live view, so that the lines the SSE
	// stream replays are not shown twice: "<unix ms>|<seq>|<text>".
	Key string
}

func (s *Server) bootPage(r *http.Request) (any, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return nil, badRequest("boot id must be a positive number, not " + quote(r.PathValue("id")))
	}
	b, err := s.cfg.Boots.GetBoot(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("no boot " + strconv.FormatInt(id, 10))
	}
	if err != nil {
		return nil, err
	}
	rep := s.decodeAll([]store.Boot{b})[0]
	prev := s.previousReport(r, b)
	d := bootData{bootItem: newBootItem(rep, prev, s.cfg.Clock.Now()), LiveURL: "/hosts/" + urlPathEscape(b.Host) + "/live"}
	for _, m := range rep.Stages {
		d.Stages = append(d.Stages, stageRow{Stage: m.Stage.String(), Via: string(m.Via), At: formatTime(m.At), DurationMS: m.DurationMS})
	}
	for _, st := range sortedKeys(rep.Deadlines) {
		d.Deadlines = append(d.Deadlines, kv{st, rep.Deadlines[st]})
	}
	d.Log, d.LogNote = s.bootLog(r, rep)
	return d, nil
}

// previousReport returns the host's boot before b, if it is among the
// newest History boots.
func (s *Server) previousReport(r *http.Request, b store.Boot) *boot.Report {
	if b.Seq <= 1 {
		return nil
	}
	boots, err := s.cfg.Boots.ListBoots(r.Context(), b.Host, s.cfg.History)
	if err != nil {
		s.log.Warn("dashboard: listing boots for the baseline failed", zap.String("host", b.Host), zap.Error(err))
		return nil
	}
	for _, o := range boots {
		if o.Seq == b.Seq-1 {
			return s.decodeAll([]store.Boot{o})[0]
		}
	}
	return nil
}

// bootLog reads the boot's netconsole lines and interleaves the stage
// markers; lines that matched a failure signature are marked.
func (s *Server) bootLog(r *http.Request, rep *boot.Report) ([]logRow, string) {
	if s.cfg.Logs == nil {
		return nil, "This server keeps no netconsole log (no log store configured)."
	}
	lines, err := s.cfg.Logs.QueryLogs(r.Context(), store.LogQuery{Host: rep.Host, BootID: rep.BootID, Limit: s.cfg.LogLines})
	if err != nil {
		s.log.Warn("dashboard: reading the boot's log failed", zap.Int64("boot", rep.BootID), zap.Error(err))
		return nil, "Reading the log failed: " + err.Error()
	}
	note := ""
	if len(lines) == 0 {
		note = "No netconsole line was received for this boot."
	} else if len(lines) == s.cfg.LogLines {
		note = "Showing the last " + strconv.Itoa(len(lines)) + " lines; `netbootctl logs` shows them all."
	}
	return interleave(lines, rep), note
}

// interleave merges stage markers (by time) into the log lines and marks
// the lines that matched a signature.
func interleave(lines []store.LogLine, rep *boot.Report) []logRow {
	sigs := signatureLines(rep)
	out := make([]logRow, 0, len(lines)+len(rep.Stages))
	next := 0
	for _, l := range lines {
		for next < len(rep.Stages) && !rep.Stages[next].At.After(l.Time) {
			out = append(out, markerRow(rep.Stages[next]))
			next++
		}
		row := logRow{Time: formatLogTime(l), Level: levelName(l.Level), Text: l.Text}
		if h, ok := sigs[strings.TrimSpace(l.Text)]; ok {
			row.Signature, row.Fatal = h.Name, h.Fatal
		}
		out = append(out, row)
	}
	for ; next < len(rep.Stages); next++ {
		out = append(out, markerRow(rep.Stages[next]))
	}
	return out
}

func markerRow(m boot.StageMark) logRow {
	return logRow{Marker: m.Stage.String(), Time: m.At.UTC().Format("15:04:05.000"), Text: "stage " + m.Stage.String() + " reached (" + string(m.Via) + ")"}
}

// signatureLines indexes the report's signature hits by their line.
func signatureLines(rep *boot.Report) map[string]boot.SignatureHit {
	out := map[string]boot.SignatureHit{}
	for _, h := range rep.Signatures {
		out[strings.TrimSpace(h.Line)] = h
	}
	if f := rep.Failure; f != nil && f.Line != "" {
		if _, ok := out[strings.TrimSpace(f.Line)]; !ok {
			out[strings.TrimSpace(f.Line)] = boot.SignatureHit{Name: f.Signature, Fatal: true, Line: f.Line}
		}
	}
	return out
}

// formatLogTime shows the kernel's timestamp when known, else receive time.
func formatLogTime(l store.LogLine) string {
	if l.KTime >= 0 {
		return "[" + strconv.FormatFloat(float64(l.KTime)/1e6, 'f', 6, 64) + "]"
	}
	return l.Time.UTC().Format("15:04:05.000")
}
