package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"netboot/internal/event"
	"netboot/internal/store"
)

func openTest(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "test.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestBootsRoundTrip(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	t0 := time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC)
	var ids []int64
	for i := 0; i < 3; i++ {
		b := store.Boot{Host: "pi-01", Started: t0.Add(time.Duration(i) * time.Minute), Updated: t0, Outcome: store.OutcomeInProgress, Stage: event.StageDHCP}
		if err := db.CreateBoot(ctx, &b); err != nil {
			t.Fatal(err)
		}
		if b.Seq != i+1 {
			t.Fatalf("seq = %d, want %d", b.Seq, i+1)
		}
		ids = append(ids, b.ID)
	}
	other := store.Boot{Host: "udoo", Started: t0, Updated: t0, Outcome: store.OutcomeInProgress}
	if err := db.CreateBoot(ctx, &other); err != nil || other.Seq != 1 {
		t.Fatalf("other host: seq %d err %v", other.Seq, err)
	}

	b, err := db.GetBoot(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	b.Outcome, b.Stage, b.Reason, b.Ended, b.State = store.OutcomeFailed, event.StageRootPrepare, "lock held by 10.0.0.9", t0.Add(time.Hour), []byte(`{"x":1}`)
	if err := db.UpdateBoot(ctx, &b); err != nil {
		t.Fatal(err)
	}
	got, err := db.GetBoot(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if got.Outcome != store.OutcomeFailed || got.Stage != event.StageRootPrepare || got.Reason != b.Reason || !got.Ended.Equal(b.Ended) || string(got.State) != `{"x":1}` {
		t.Fatalf("round trip: got %+v", got)
	}

	list, err := db.ListBoots(ctx, "pi-01", 2)
	if err != nil || len(list) != 2 || list[0].Seq != 3 {
		t.Fatalf("ListBoots = %+v, %v; want newest two", list, err)
	}
	latest, err := db.LatestBoots(ctx)
	if err != nil || latest["pi-01"].Seq != 3 || latest["udoo"].Seq != 1 || len(latest) != 2 {
		t.Fatalf("LatestBoots = %+v, %v", latest, err)
	}
	open, err := db.OpenBoots(ctx)
	if err != nil || len(open) != 3 {
		t.Fatalf("OpenBoots = %d boots, %v; want 3", len(open), err)
	}
	if _, err := db.GetBoot(ctx, 999); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetBoot(999) err = %v, want ErrNotFound", err)
	}
	if err := db.UpdateBoot(ctx, &store.Boot{ID: 999}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateBoot(999) err = %v, want ErrNotFound", err)
	}
}

func TestEventsRoundTrip(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	t0 := time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC)
	in := []event.Event{
		{BootID: 1, Host: "pi-01", Time: t0, Kind: event.DHCPRequest, Stage: event.StageDHCP, Attrs: map[string]string{"client": "rpi"}},
		{BootID: 1, Host: "pi-01", Time: t0.Add(time.Second), Kind: event.FileFailed, Stage: event.StageFirmware, Failed: true, Message: "timeout"},
		{BootID: 2, Host: "udoo", Time: t0, Kind: event.DHCPRequest, Stage: event.StageDHCP},
	}
	for i := range in {
		if err := db.AddEvent(ctx, &in[i]); err != nil {
			t.Fatal(err)
		}
	}
	got, err := db.BootEvents(ctx, 1)
	if err != nil || len(got) != 2 {
		t.Fatalf("BootEvents = %v, %v", got, err)
	}
	if got[0].Attr("client") != "rpi" || got[1].Stage != event.StageFirmware || !got[1].Failed || got[1].Message != "timeout" || !got[1].Time.Equal(in[1].Time) {
		t.Fatalf("BootEvents mismatch: %+v", got)
	}
	hostEv, err := db.HostEvents(ctx, "pi-01", t0.Add(500*time.Millisecond), 0)
	if err != nil || len(hostEv) != 1 || hostEv[0].Kind != event.FileFailed {
		t.Fatalf("HostEvents since = %+v, %v", hostEv, err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keep.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	b := store.Boot{Host: "h", Started: time.Now(), Updated: time.Now(), Outcome: store.OutcomeInProgress}
	if err := db.CreateBoot(ctx, &b); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.GetBoot(ctx, b.ID); err != nil {
		t.Fatalf("after reopen: %v", err)
	}
}
