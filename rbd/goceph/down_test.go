//go:build cgo && (pacific || quincy || reef || squid || tentacle || umbrella)

package goceph

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"netboot/rbd"
	"netboot/test/cephlab"
)

// TestCephDown: with the OSD stopped, then the whole cluster stopped, a
// prepare fails with ErrUnavailable within the configured bound and does
// nothing (rule 6). The bound checked is the executor's: one call's
// timeout (the first call fails) plus generous scheduling slack.
func TestCephDown(t *testing.T) {
	testenvTools(t)
	lab := cephlab.Start(t, cephlab.Config{})
	img := newImage(t, lab)
	const bound = 2 * time.Second
	connected := admin(t, lab, bound)
	if _, err := connected.Blocklist(ctxT(t, 30*time.Second)); err != nil {
		t.Fatalf("cluster not usable before the test: %v", err)
	}
	req := request("down", "127.0.0.1", img, "127.0.0.1:0/1", 1)

	check := func(t *testing.T, cl rbd.Cluster) {
		t.Helper()
		ex, m := executor(t, cl, bound)
		start := time.Now()
		res, err := ex.Prepare(ctxT(t, time.Minute), req)
		took := time.Since(start)
		if !errors.Is(err, rbd.ErrUnavailable) || !errors.Is(err, rbd.ErrPrepare) {
			t.Fatalf("err = %v, want ErrPrepare wrapping ErrUnavailable", err)
		}
		t.Logf("failed after %s: %v", took.Round(time.Millisecond), err)
		if took > 3*bound+5*time.Second {
			t.Errorf("prepare took %s, bound is %s per call", took, bound)
		}
		if len(res.Steps) != 0 || res.Error == "" {
			t.Errorf("result %+v: want no steps and the error recorded", res)
		}
		if got := testutil.ToFloat64(m.CephErrors.WithLabelValues("lock-owners")); got != 1 {
			t.Errorf("ceph error metric for lock-owners = %v, want 1", got)
		}
	}
	if err := lab.StopOSD(); err != nil {
		t.Fatal(err)
	}
	t.Run("osd-stopped", func(t *testing.T) { check(t, connected) })
	if err := lab.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Run("all-stopped-connected", func(t *testing.T) { check(t, connected) })
	t.Run("all-stopped-new-connection", func(t *testing.T) { check(t, admin(t, lab, bound)) })
}
