package main

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"netboot/internal/api"
	"netboot/internal/boot"
	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/store/sqlite"
)

// TestAPIContract runs nbinit's HTTP client against netbootd's real API
// server and boot tracker (test-only imports: none of this is in the image).
func TestAPIContract(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	inv := &config.Config{
		Classes: map[string]config.Class{"x86": {Arch: "amd64"}},
		Hosts:   []config.Host{{Name: "node1", MAC: "02:00:00:00:00:01", IP: "127.0.0.1", Class: "x86", Arch: "amd64"}},
	}
	clk := clock.NewFake(time.Date(2026, 11, 26, 5, 0, 0, 0, time.UTC))
	tr, err := boot.New(ctx, boot.Config{Inventory: inv, Store: db, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	ts := httptest.NewServer(api.New(api.Config{Inventory: inv, Store: db, Deps: api.Deps{Boots: tr}, Clock: clk}))
	t.Cleanup(ts.Close)

	c := NewAPIClient(ts.URL, "node1")
	for _, r := range []StageReport{
		{Stage: "init", OK: true, Message: "nbinit started", Attrs: map[string]string{"modules": "28", "attempt": "1"}},
		{Stage: "network", OK: true, Attrs: map[string]string{"ip": "127.0.0.1/8"}},
		{Stage: "root-prepare", OK: false, Message: "refused (409): lock held", Attrs: map[string]string{"retry_in": "1s"}},
	} {
		if err := c.PostStage(ctx, r); err != nil {
			t.Errorf("post stage %s: %v", r.Stage, err)
		}
	}
	if _, ok := tr.Current("node1"); !ok {
		t.Error("the tracker opened no boot for the posted stages")
	}
	// No Ceph configured: root/prepare is refused with a reason nbinit shows.
	_, err = c.Prepare(ctx)
	var re *RefusedError
	if !errors.As(err, &re) || re.Status != 503 || re.Reason == "" {
		t.Errorf("Prepare without ceph = %v, want a 503 refusal with a reason", err)
	}
	if err := NewAPIClient(ts.URL, "nosuch").PostStage(ctx, StageReport{Stage: "init", OK: true}); !errors.As(err, &re) || re.Status != 404 {
		t.Errorf("unknown host: %v, want 404", err)
	}
}
