package main

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"netboot/internal/api"
	"netboot/internal/boot"
	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/event"
	"netboot/internal/store/sqlite"
	"netboot/rbd"
	"netboot/rbd/rbdtest"
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

// TestPrepareMappedContract: root/prepare's real answer (rbd.PrepareAnswer
// over the in-memory cluster) becomes a valid map spec, and the mapped
// report with the kernel's sysfs values is accepted.
func TestPrepareMappedContract(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	inv := &config.Config{
		Ceph:    config.Ceph{Monitors: []string{"10.0.0.1:6789"}, Timeout: config.Duration(time.Second)},
		Classes: map[string]config.Class{"x86": {Arch: "amd64"}},
		Hosts:   []config.Host{{Name: "node1", MAC: "02:00:00:00:00:01", IP: "127.0.0.1", Class: "x86", Arch: "amd64"}},
	}
	inv.Hosts[0].RBD.Pool, inv.Hosts[0].RBD.Image = "rbd", "node1-root"
	clk := clock.NewFake(time.Date(2026, 11, 26, 5, 0, 0, 0, time.UTC))
	tr, err := boot.New(ctx, boot.Config{Inventory: inv, Store: db, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	fc := rbdtest.New(rbd.Observation{})
	ex := rbd.NewExecutor(fc, rbd.ExecutorConfig{CallTimeout: time.Second}, zap.NewNop(), clock.Real{}, nil)
	svc := rbd.NewService(rbd.ServiceConfig{Inventory: inv, Cluster: fc, Executor: ex, Clients: db, Boots: tr, Log: zap.NewNop(), Clock: clk})
	ts := httptest.NewServer(api.New(api.Config{Inventory: inv, Store: db, Deps: api.Deps{Boots: tr, Root: svc}, Clock: clk}))
	t.Cleanup(ts.Close)

	c := NewAPIClient(ts.URL, "node1")
	if _, err := tr.Record(ctx, event.Event{Host: "node1", Kind: event.DHCPRequest, Stage: event.StageDHCP, Attrs: map[string]string{"client": "ipxe"}}); err != nil {
		t.Fatal(err)
	}
	p, err := c.Prepare(ctx)
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	if err := p.validate(); err != nil {
		t.Fatalf("prepare answer %+v: %v", p, err)
	}
	spec := p.MapSpec()
	if !strings.HasPrefix(spec, "10.0.0.1:6789 name=") || !strings.HasSuffix(spec, " rbd node1-root -") {
		t.Errorf("map spec %q", spec)
	}
	if err := c.Mapped(ctx, Mapped{ClientAddr: "127.0.0.1:0/3709378371", ClientID: "client4130", Device: "/dev/rbd0"}); err != nil {
		t.Errorf("mapped: %v", err)
	}
}
