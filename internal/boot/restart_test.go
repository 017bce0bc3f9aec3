package boot

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"netboot/internal/clock"
	"netboot/internal/event"
	"netboot/internal/store"
	"netboot/internal/store/sqlite"
)

// TestRestartMidBoot stops the tracker (and its store) in the middle of a
// boot, opens both again from the same file and checks that the attempt,
// its deadline and its outcome carry on.
func TestRestartMidBoot(t *testing.T) {
	cases := []struct {
		name        string
		downtime    time.Duration
		after       []step
		wantOutcome string
		wantStage   event.Stage
	}{
		{"continues-to-success", 5 * time.Second, chain(rootMount, switchRoot, userspace), store.OutcomeSucceeded, event.StageReady},
		{"deadline-re-armed", 5 * time.Second, chain(wait(50 * time.Second)), store.OutcomeStuck, event.StageRootMap},
		{"deadline-passed-while-down", 2 * time.Minute, nil, store.OutcomeStuck, event.StageRootMap},
		{"new-attempt-after-restart", 5 * time.Second, chain(firmwareDHCP), store.OutcomeFailed, event.StageRootMap},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "netboot.db")
			clk := clock.NewFake(t0)
			st1, err := sqlite.Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			tr1, err := New(ctx, Config{Inventory: testInventory(), Store: st1, Clock: clk})
			if err != nil {
				t.Fatal(err)
			}
			feed(t, tr1, clk, "udoo1", x86ToRootMap)
			id1, _ := tr1.Current("udoo1")
			tr1.Close()
			st1.Close()

			clk.Advance(tc.downtime)
			st2, err := sqlite.Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st2.Close() })
			tr2 := newTestTracker(t, testInventory(), st2, clk)
			if tc.downtime < time.Minute {
				if id, ok := tr2.Current("udoo1"); !ok || id != id1 || !tr2.InProgress("udoo1") {
					t.Fatalf("after restart Current = %d,%v InProgress=%v; want %d in progress", id, ok, tr2.InProgress("udoo1"), id1)
				}
			}
			feed(t, tr2, clk, "udoo1", tc.after)
			r, err := tr2.Report(ctx, id1)
			if err != nil {
				t.Fatal(err)
			}
			if r.Outcome != tc.wantOutcome || r.LastStage != tc.wantStage {
				t.Errorf("boot %d: outcome %s at %s (%s), want %s at %s", id1, r.Outcome, r.LastStage, r.Message, tc.wantOutcome, tc.wantStage)
			}
			if len(r.Stages) < 9 {
				t.Errorf("boot %d lost its timeline: %d stages", id1, len(r.Stages))
			}
		})
	}
}

// feed records steps for host on tr, advancing clk.
func feed(t *testing.T, tr *Tracker, clk *clock.Fake, host string, steps []step) {
	t.Helper()
	for _, s := range steps {
		clk.Advance(s.after)
		if s.ev.Kind == "" {
			continue
		}
		e := s.ev
		e.Host, e.Time = host, clk.Now()
		if _, err := tr.Record(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
}
