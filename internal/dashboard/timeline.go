package dashboard

import (
	"fmt"
	"time"

	"netboot/internal/boot"
	"netboot/internal/store"
)

// timeline is one boot drawn as a bar: one segment per stage reached, its
// width proportional to the time spent in it.
type timeline struct {
	Label    string
	TotalMS  int64
	Segments []segment
	// Failed/Stuck mark where the boot ended badly; FailStage is the stage
	// that failed (it may be the one after the last segment).
	Failed    bool
	Stuck     bool
	FailStage string
	Signature string
	Message   string
}

// segment is one stage of a timeline.
type segment struct {
	Stage string
	// DurationMS is the report's duration of the stage; for the ongoing
	// stage of a boot in progress it is 0 and ElapsedMS is the time so far.
	DurationMS int64
	ElapsedMS  int64
	Ongoing    bool
	// End marks the last segment of a failed or stuck boot.
	End   string // "", "failed" or "stuck"
	Grow  int64  // flex-grow: the width weight
	Title string
}

// buildTimeline draws r as of now.
func buildTimeline(r *boot.Report, now time.Time) timeline {
	tl := timeline{Label: fmt.Sprintf("Stages of %s boot #%d", r.Host, r.Seq)}
	n := len(r.Stages)
	for i, m := range r.Stages {
		seg := segment{Stage: m.Stage.String(), DurationMS: m.DurationMS, ElapsedMS: m.DurationMS}
		if i == n-1 && r.Outcome == store.OutcomeInProgress {
			seg.Ongoing = true
			seg.ElapsedMS = max(now.Sub(m.At).Milliseconds(), 0)
		}
		seg.Grow = max(seg.ElapsedMS, 1)
		seg.Title = fmt.Sprintf("%s: %s", seg.Stage, formatMS(seg.ElapsedMS))
		if seg.Ongoing {
			seg.Title += " so far"
		}
		tl.TotalMS += seg.ElapsedMS
		tl.Segments = append(tl.Segments, seg)
	}
	markEnd(&tl, r)
	return tl
}

// markEnd marks the failing or stuck end of a timeline.
func markEnd(tl *timeline, r *boot.Report) {
	switch r.Outcome {
	case store.OutcomeFailed:
		tl.Failed = true
	case store.OutcomeStuck:
		tl.Stuck = true
	default:
		return
	}
	tl.FailStage = stageName(r.LastStage)
	tl.Message = r.Message
	if f := r.Failure; f != nil {
		tl.FailStage, tl.Signature = stageName(f.Stage), f.Signature
		if f.Message != "" {
			tl.Message = f.Message
		}
	}
	if n := len(tl.Segments); n > 0 {
		end := "failed"
		if tl.Stuck {
			end = "stuck"
		}
		tl.Segments[n-1].End = end
		tl.Segments[n-1].Title += " — " + end + " at " + tl.FailStage
	}
}

// smokeRow compares one smoke check with the baseline taken before the
// reboot (or, without an announced reboot, the previous boot's result).
type smokeRow struct {
	Name, Kind, Target string
	Baseline, Now      string // "pass", "fail" or "none"
	Verdict            string // "ok", "regression", "still failing", "fixed", "new", "not run"
	Message            string
	Attempts           int
	DurationMS         int64
}

// compareSmoke lines up r's smoke results with baseline (nil: none known).
func compareSmoke(r *boot.Report, baseline []boot.SmokeResult) []smokeRow {
	before := map[string]boot.SmokeResult{}
	for _, b := range baseline {
		before[b.Name] = b
	}
	var rows []smokeRow
	seen := map[string]bool{}
	for _, s := range r.Smoke {
		seen[s.Name] = true
		row := smokeRow{Name: s.Name, Kind: s.Kind, Target: s.Target, Now: passFail(s.OK), Baseline: "none",
			Message: s.Message, Attempts: s.Attempts, DurationMS: s.DurationMS}
		if b, ok := before[s.Name]; ok {
			row.Baseline = passFail(b.OK)
		}
		row.Verdict = verdict(row.Baseline, row.Now)
		rows = append(rows, row)
	}
	for _, b := range baseline {
		if !seen[b.Name] {
			rows = append(rows, smokeRow{Name: b.Name, Kind: b.Kind, Target: b.Target, Baseline: passFail(b.OK),
				Now: "none", Verdict: "not run"})
		}
	}
	return rows
}

func passFail(ok bool) string {
	if ok {
		return "pass"
	}
	return "fail"
}

func verdict(before, now string) string {
	switch {
	case before == "pass" && now == "fail":
		return "regression"
	case before == "fail" && now == "fail":
		return "still failing"
	case before == "fail" && now == "pass":
		return "fixed"
	case before == "none" && now == "fail":
		return "failing"
	case before == "none":
		return "new"
	}
	return "ok"
}

// baselineFor picks the baseline r is judged against: the one taken when
// the reboot was announced, else the previous boot's smoke results.
func baselineFor(r *boot.Report, previous *boot.Report) ([]boot.SmokeResult, string) {
	if r.Expected != nil && len(r.Expected.Baseline) > 0 {
		return r.Expected.Baseline, "baseline taken when the reboot was announced (" + formatTime(r.Expected.Announced) + ")"
	}
	if previous != nil && len(previous.Smoke) > 0 {
		return previous.Smoke, fmt.Sprintf("previous boot #%d (no reboot was announced)", previous.Seq)
	}
	return nil, "no baseline: no reboot was announced and no earlier boot ran the checks"
}
