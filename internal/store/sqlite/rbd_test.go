package sqlite

import (
	"context"
	"errors"
	"testing"
	"time"

	"netboot/internal/store"
)

func TestRBDClients(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.LastRBDClient(ctx, "cm4-03", "rbd", "root"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("empty store: err = %v, want ErrNotFound", err)
	}
	t0 := time.UnixMilli(1_700_000_000_000).UTC()
	for i, c := range []store.RBDClient{
		{Host: "cm4-03", BootID: 1, Time: t0, Pool: "rbd", Image: "root", ClientAddr: "10.0.0.5:0/1", ClientID: "client4130"},
		{Host: "cm4-04", BootID: 2, Time: t0, Pool: "rbd", Image: "root4", ClientAddr: "10.0.0.6:0/9", ClientID: "client4131"},
		{Host: "cm4-03", BootID: 3, Time: t0.Add(time.Minute), Pool: "rbd", Image: "root", ClientAddr: "10.0.0.5:0/2", ClientID: "client4169"},
		{Host: "cm4-03", BootID: 4, Time: t0.Add(2 * time.Minute), Pool: "rbd", Image: "other", ClientAddr: "10.0.0.5:0/3", ClientID: "client4170"},
	} {
		if err := db.RecordRBDClient(ctx, c); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	last, err := db.LastRBDClient(ctx, "cm4-03", "rbd", "root")
	if err != nil || last.ClientAddr != "10.0.0.5:0/2" || last.BootID != 3 || !last.Time.Equal(t0.Add(time.Minute)) {
		t.Fatalf("last = %+v, %v", last, err)
	}
	hist, err := db.RBDClientHistory(ctx, "cm4-03", 0)
	if err != nil || len(hist) != 3 || hist[0].ClientAddr != "10.0.0.5:0/3" {
		t.Fatalf("history = %+v, %v", hist, err)
	}
	if hist, _ := db.RBDClientHistory(ctx, "cm4-03", 1); len(hist) != 1 {
		t.Fatalf("limited history = %d entries", len(hist))
	}
}
