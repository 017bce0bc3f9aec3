package dashboard

import (
	"encoding/json"
	"fmt"
	"html/template"
	"slices"
	"strings"
	"time"

	"netboot/internal/boot"
	"netboot/internal/event"
	"netboot/internal/store"
)

// Outcome keys as the dashboard shows them: the store's outcomes, plus
// "regression" (a failed boot whose reason is a smoke-check regression) and
// "none" (a host that never booted here).
const (
	keyNone       = "none"
	keyRegression = "regression"
)

// outcomeKey is the CSS class suffix and label of a boot's outcome.
func outcomeKey(outcome, reason string) string {
	switch {
	case outcome == "":
		return keyNone
	case outcome == store.OutcomeFailed && reason == boot.ReasonRegression:
		return keyRegression
	}
	return outcome
}

// needsAttention reports outcomes that must stand out.
func needsAttention(key string) bool {
	switch key {
	case store.OutcomeFailed, store.OutcomeStuck, store.OutcomeSkipped, keyRegression:
		return true
	}
	return false
}

// outcomeOrder sorts the overview: what needs attention first.
var outcomeOrder = map[string]int{
	store.OutcomeFailed: 0, keyRegression: 1, store.OutcomeStuck: 2, store.OutcomeSkipped: 3,
	store.OutcomeInProgress: 4, store.OutcomeSucceeded: 5, keyNone: 6,
}

// outcomeKeys lists every key in display order (summary, filter).
var outcomeKeys = []string{store.OutcomeFailed, keyRegression, store.OutcomeStuck, store.OutcomeSkipped,
	store.OutcomeInProgress, store.OutcomeSucceeded, keyNone}

// badgeText gives every outcome a symbol and a word, so that colour is
// never the only cue.
var badgeText = map[string][2]string{
	store.OutcomeSucceeded:  {"✓", "succeeded"},
	store.OutcomeFailed:     {"✗", "failed"},
	keyRegression:           {"↯", "regression"},
	store.OutcomeStuck:      {"◷", "stuck"},
	store.OutcomeSkipped:    {"⤳", "skipped"},
	store.OutcomeInProgress: {"…", "in progress"},
	keyNone:                 {"–", "never booted"},
}

// outcomeBadge renders a key as a labelled badge.
func outcomeBadge(key string) template.HTML {
	t, ok := badgeText[key]
	if !ok {
		t = [2]string{"?", key}
	}
	return template.HTML(fmt.Sprintf(`<span class="badge outcome-%s" data-outcome="%s"><span aria-hidden="true">%s</span> %s</span>`,
		template.HTMLEscapeString(key), template.HTMLEscapeString(key), t[0], template.HTMLEscapeString(t[1])))
}

// okBadge renders a pass/fail/unknown smoke result.
func okBadge(state string) template.HTML {
	label := map[string]string{"pass": "✓ pass", "fail": "✗ fail", "none": "– not run"}[state]
	if label == "" {
		label = state
	}
	return template.HTML(fmt.Sprintf(`<span class="badge check-%s" data-check="%s">%s</span>`,
		template.HTMLEscapeString(state), template.HTMLEscapeString(state), template.HTMLEscapeString(label)))
}

// decodeReport reads a boot's persisted report; a boot without one (or with
// state the dashboard cannot read) gets a report built from its columns.
func decodeReport(b store.Boot) (*boot.Report, error) {
	r := &boot.Report{}
	var err error
	if len(b.State) > 0 {
		if err = json.Unmarshal(b.State, r); err != nil {
			r = &boot.Report{}
			err = fmt.Errorf("decode report of boot %d: %w", b.ID, err)
		}
	}
	fillFromBoot(r, b)
	return r, err
}

// fillFromBoot makes the stored boot's columns authoritative for the
// fields both carry.
func fillFromBoot(r *boot.Report, b store.Boot) {
	r.Host, r.BootID, r.Seq = b.Host, b.ID, b.Seq
	r.Started, r.Updated, r.Ended = b.Started, b.Updated, b.Ended
	r.Outcome, r.LastStage = b.Outcome, b.Stage
	if b.Reason != "" {
		r.Reason = b.Reason
	}
}

// since is the moment the boot's current state began.
func since(b store.Boot) time.Time {
	if !b.Ended.IsZero() {
		return b.Ended
	}
	return b.Started
}

// formatMS renders a duration in milliseconds for people: "850 ms",
// "4.2 s", "3 m 07 s", "1 h 02 m".
func formatMS(ms int64) string {
	d := time.Duration(ms) * time.Millisecond
	switch {
	case ms < 0:
		return "–"
	case d < time.Second:
		return fmt.Sprintf("%d ms", ms)
	case d < time.Minute:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%d m %02d s", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%d h %02d m", int(d.Hours()), int(d.Minutes())%60)
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// ago renders how long before now t was.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	return formatMS(d.Milliseconds()) + " ago"
}

var levelNames = [...]string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

func levelName(l int8) string {
	if l < 0 || int(l) >= len(levelNames) {
		return ""
	}
	return levelNames[l]
}

// stageName is a stage's vocabulary name, "–" for none.
func stageName(s event.Stage) string {
	if s == event.StageNone {
		return "–"
	}
	return s.String()
}

// sortedKeys returns m's keys in stage order where they name stages, the
// rest alphabetically after them.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	rank := func(k string) int {
		if s, err := event.ParseStage(k); err == nil {
			return int(s)
		}
		return 1 << 20
	}
	slices.SortFunc(keys, func(a, b string) int {
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra - rb
		}
		return strings.Compare(a, b)
	})
	return keys
}
