package e2e

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"netboot/internal/boot"
	"netboot/internal/event"
)

// timingTable collects each scenario's per-stage durations from netbootd's
// reports, for the note (timings.md in the artifacts, and the log).
type timingTable struct {
	mu    sync.Mutex
	rows  []timingRow
	notes []string
}

// addNote adds a line under the table.
func (tt *timingTable) addNote(note string) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	tt.notes = append(tt.notes, note)
}

type timingRow struct {
	scenario string
	rep      boot.Report
	extra    string
}

func newTimingTable() *timingTable { return &timingTable{} }

func (tt *timingTable) add(scenario string, rep *boot.Report, extra string) {
	if rep == nil {
		return
	}
	tt.mu.Lock()
	defer tt.mu.Unlock()
	tt.rows = append(tt.rows, timingRow{scenario: scenario, rep: *rep, extra: extra})
}

// markdown renders one row per scenario, one column per stage (seconds
// spent in the stage until the next one), then total and outcome.
func (tt *timingTable) markdown() string {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	var b strings.Builder
	b.WriteString("| scenario | boot | outcome |")
	for _, st := range event.Stages() {
		b.WriteString(" " + st.String() + " |")
	}
	b.WriteString(" total | notes |\n|---|---|---|")
	b.WriteString(strings.Repeat("---|", len(event.Stages())+2) + "\n")
	for _, r := range tt.rows {
		durs := map[event.Stage]int64{}
		for _, m := range r.rep.Stages {
			durs[m.Stage] = m.DurationMS
		}
		fmt.Fprintf(&b, "| %s | %d | %s |", r.scenario, r.rep.BootID, r.rep.Outcome)
		for _, st := range event.Stages() {
			if d, ok := durs[st]; ok {
				fmt.Fprintf(&b, " %.2f |", float64(d)/1000)
			} else {
				b.WriteString(" |")
			}
		}
		total := ""
		if !r.rep.Ended.IsZero() {
			total = fmt.Sprintf("%.1f", r.rep.Ended.Sub(r.rep.Started).Seconds())
		}
		fmt.Fprintf(&b, " %s | %s |\n", total, r.extra)
	}
	for _, n := range tt.notes {
		b.WriteString("\n" + n + "\n")
	}
	return b.String()
}

func (tt *timingTable) write(t *testing.T, path string) {
	md := tt.markdown()
	t.Logf("per-stage timings (s):\n%s", md)
	if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
		t.Errorf("write timings: %v", err)
	}
}
