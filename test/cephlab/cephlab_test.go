package cephlab

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestLifecycle proves the harness: bootstrap, an image, a restart that
// keeps it, OSD stop/start, and Stop leaving none of our PIDs.
func TestLifecycle(t *testing.T) {
	lab := Start(t, Config{})
	lab.CreateImage(t, lab.Pool(), "life", "16M")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if out, err := lab.Rbd(ctx, "info", "rbd/life"); err != nil || !strings.Contains(out, "exclusive-lock") {
		t.Fatalf("rbd info: %v %q", err, out)
	}
	pids := lab.PIDs()
	if len(pids) != 2 {
		t.Fatalf("PIDs = %v, want mon.a and osd.0", pids)
	}
	if err := lab.Restart(ctx); err != nil {
		t.Fatalf("restart: %v\n%s", err, lab.LogTail())
	}
	if _, err := lab.Rbd(ctx, "info", "rbd/life"); err != nil {
		t.Fatalf("image lost over restart: %v", err)
	}
	if err := lab.StopOSD(); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Ceph(ctx, "mon", "stat"); err != nil {
		t.Fatalf("mon stat with the OSD stopped: %v", err)
	}
	if err := lab.StartOSD(ctx); err != nil {
		t.Fatal(err)
	}
	pids = lab.PIDs()
	if err := lab.Stop(); err != nil {
		t.Fatal(err)
	}
	for name, pid := range pids {
		if processAlive(pid) {
			t.Errorf("%s pid %d still alive after Stop", name, pid)
		}
	}
}
