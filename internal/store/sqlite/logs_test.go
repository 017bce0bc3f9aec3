package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"netboot/internal/store"
)

var logT0 = time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)

func logLines(host string, boot int64, at time.Time, n int, text string) []store.LogLine {
	var out []store.LogLine
	for i := 0; i < n; i++ {
		out = append(out, store.LogLine{Time: at.Add(time.Duration(i) * time.Second), Host: host, BootID: boot,
			Seq: int64(i), KTime: int64(i), Level: int8(i % 8), Text: fmt.Sprintf("%s %d", text, i)})
	}
	return out
}

func TestLogsQueryAndRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "nb.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	// One batch mixing hosts and boots, interleaved.
	var batch []store.LogLine
	a, b, c := logLines("a", 1, logT0, 8, "a1"), logLines("a", 2, logT0.Add(time.Hour), 8, "a2"), logLines("b", 7, logT0, 8, "b7")
	for i := range a {
		batch = append(batch, a[i], c[i], b[i])
	}
	if err := db.AppendLogs(ctx, batch); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = Open(ctx, path) // history survives a restart
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tests := []struct {
		name string
		q    store.LogQuery
		want string
	}{
		{"host", store.LogQuery{Host: "a"}, "a1 0,a1 1,a1 2,a1 3,a1 4,a1 5,a1 6,a1 7,a2 0,a2 1,a2 2,a2 3,a2 4,a2 5,a2 6,a2 7"},
		{"boot", store.LogQuery{Host: "a", BootID: 2, Limit: 2}, "a2 6,a2 7"},
		{"since", store.LogQuery{Host: "a", Since: logT0.Add(time.Hour + 6*time.Second)}, "a2 6,a2 7"},
		{"level", store.LogQuery{Host: "b", HasMaxLevel: true, MaxLevel: 1}, "b7 0,b7 1"},
		{"grep", store.LogQuery{Host: "b", Match: func(s string) bool { return strings.HasSuffix(s, "3") }}, "b7 3"},
		{"none", store.LogQuery{Host: "c"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := db.QueryLogs(ctx, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			var texts []string
			for _, l := range got {
				texts = append(texts, l.Text)
				if l.Host != tt.q.Host {
					t.Errorf("line %q of host %q", l.Text, l.Host)
				}
			}
			if s := strings.Join(texts, ","); s != tt.want {
				t.Errorf("got %s\nwant %s", s, tt.want)
			}
		})
	}
	boots, err := db.LogBoots(ctx, "a")
	if err != nil || len(boots) != 2 || boots[1].BootID != 2 || boots[1].Lines != 8 {
		t.Errorf("LogBoots = %+v, %v", boots, err)
	}
	if last, err := db.LastLogBoot(ctx, "a"); err != nil || last != 2 {
		t.Errorf("LastLogBoot = %d, %v", last, err)
	}
}

func TestPruneLogs(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for day := 0; day < 4; day++ {
		if err := db.AppendLogs(ctx, logLines("h", int64(day+1), logT0.Add(time.Duration(day)*24*time.Hour), 10, strings.Repeat("x", 100))); err != nil {
			t.Fatal(err)
		}
	}
	n, err := db.PruneLogs(ctx, logT0.Add(24*time.Hour), 0) // older than a day: day 0 goes
	if err != nil || n != 10 {
		t.Fatalf("prune by age: %d lines, %v; want 10", n, err)
	}
	st, _ := db.LogStats(ctx)
	n, err = db.PruneLogs(ctx, time.Time{}, st.Bytes*2/3) // keep 2 of 3 chunks
	if err != nil || n != 10 {
		t.Fatalf("prune by size: %d lines, %v; want 10", n, err)
	}
	boots, _ := db.LogBoots(ctx, "h")
	if len(boots) != 2 || boots[0].BootID != 3 {
		t.Errorf("left: %+v, want boots 3 and 4", boots)
	}
}
