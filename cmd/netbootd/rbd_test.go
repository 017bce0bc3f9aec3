package main

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"netboot/internal/boot"
	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/event"
	"netboot/internal/store/sqlite"
	"netboot/internal/testenv"
	"netboot/rbd"
	"netboot/rbd/goceph"
	"netboot/test/cephlab"
)

// TestSetupRBD wires the hand-over the way netbootd does, from a config
// with monitors and a keyring only (no ceph.conf), against a real cluster:
// status answers, a prepare refuses a host that is not booting, and the
// metrics are registered.
func TestSetupRBD(t *testing.T) {
	if !goceph.Available {
		testenv.Unavailable(t, "netbootd built without Ceph support (-tags pacific)")
	}
	lab := cephlab.Start(t, cephlab.Config{})
	lab.CreateImage(t, lab.Pool(), "cm4-03-root", "16M")
	ctx := context.Background()
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg := &config.Config{
		Ceph:    config.Ceph{Monitors: []string{lab.MonV1}, User: "admin", Keyring: lab.AdminKeyring, Timeout: config.Duration(20 * time.Second)},
		RBD:     config.RBD{UnrecordedSameIP: "refuse", BlocklistExpiry: config.Duration(time.Hour)},
		Classes: map[string]config.Class{"pi": {Arch: "arm64"}},
		Hosts:   []config.Host{{Name: "cm4-03", MAC: "02:00:00:00:00:03", IP: "127.0.0.1", Class: "pi", Arch: "arm64"}},
	}
	cfg.Hosts[0].RBD.Pool, cfg.Hosts[0].RBD.Image = lab.Pool(), "cm4-03-root"
	tr, err := boot.New(ctx, boot.Config{Inventory: cfg, Store: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	reg := prometheus.NewRegistry()
	d := &daemon{cfg: cfg, log: zaptest.NewLogger(t), clock: clock.Real{}, store: db, registry: reg, events: tr}
	t.Cleanup(d.shutdown)
	if err := d.setupRBD(ctx); err != nil {
		t.Fatal(err)
	}
	svc, ok := d.apiDeps.Root.(*rbd.Service)
	if !ok {
		t.Fatalf("api Root = %T, want *rbd.Service", d.apiDeps.Root)
	}
	st, err := svc.Status(ctx, "cm4-03")
	if err != nil || len(st.Observed.Owners) != 0 {
		t.Fatalf("status %+v, %v", st, err)
	}
	_, err = svc.Prepare(ctx, "cm4-03", netip.MustParseAddr("127.0.0.1"))
	if refused, ok := err.(*rbd.RefusedError); !ok || refused.Refusal.Reason != rbd.ReasonNotBooting {
		t.Fatalf("prepare while not booting: %v", err)
	}
	if _, err := tr.Record(ctx, event.Event{Host: "cm4-03", Kind: event.DHCPRequest, Stage: event.StageDHCP}); err != nil {
		t.Fatal(err)
	}
	ans, err := svc.Prepare(ctx, "cm4-03", netip.MustParseAddr("127.0.0.1"))
	if err != nil || ans.Map.Key == "" || ans.Map.User != "netboot-cm4-03" {
		t.Fatalf("prepare while booting: %+v, %v", ans.Map, err)
	}
	n, err := testutil.GatherAndCount(reg, "netboot_rbd_refusals_total", "netboot_rbd_prepare_seconds")
	if err != nil || n == 0 {
		t.Fatalf("rbd metrics not registered: %d %v", n, err)
	}
	if !strings.HasPrefix(ans.Map.Monitors[0], "127.0.0.1:") {
		t.Errorf("monitors %v", ans.Map.Monitors)
	}
}
