package rbd_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"netboot/internal/clock"
	"netboot/rbd"
	"netboot/rbd/rbdtest"
)

// The executor's tests run against rbdtest.Cluster, the in-memory cluster
// the API and CLI tests use too.

func newTestExecutor(t *testing.T, f *rbdtest.Cluster, timeout time.Duration) (*rbd.Executor, *rbd.Metrics) {
	m := rbd.NewMetrics(nil)
	return rbd.NewExecutor(f, rbd.ExecutorConfig{CallTimeout: timeout, WatchWait: 200 * time.Millisecond, PollInterval: time.Millisecond},
		zaptest.NewLogger(t), clock.Real{}, m), m
}

func testRequest(boot int64) rbd.Request {
	ip := netip.MustParseAddr(rbd.HostIPForTest)
	return rbd.Request{Host: "cm4-03", Image: rbd.Image{Pool: "rbd", Name: "cm4-03-root"}, HostIP: ip, CallerIP: ip, Booting: true,
		BootID: boot, Recorded: rbd.MustParseAddr(rbd.PrevOwnForTest), Policy: rbd.Policy{RemoveRangeBlocklist: true, BlocklistExpiry: time.Hour}}
}

func TestExecutorHandover(t *testing.T) {
	f := rbdtest.New(rbd.OwnedForTest(rbd.PrevOwnForTest))
	ex, m := newTestExecutor(t, f, time.Second)
	res, err := ex.Prepare(context.Background(), testRequest(1))
	if err != nil || !res.OK() || len(res.Steps) != 2 {
		t.Fatalf("prepare: %+v %v", res, err)
	}
	if !strings.Contains(res.Steps[0].Detail, "watch gone") || res.Steps[1].Detail != "lock broken" {
		t.Errorf("step details %q, %q", res.Steps[0].Detail, res.Steps[1].Detail)
	}
	if f.Breaks != 1 || testutil.ToFloat64(m.LockBreaks) != 1 || testutil.ToFloat64(m.BlocklistChanges.WithLabelValues("add")) != 1 {
		t.Errorf("breaks %d, metrics %v", f.Breaks, testutil.ToFloat64(m.LockBreaks))
	}
}

// TestExecutorHalfDone: a failure after the fence is reported step by
// step, and a retry finishes from the state it left, breaking once.
func TestExecutorHalfDone(t *testing.T) {
	f := rbdtest.New(rbd.OwnedForTest(rbd.PrevOwnForTest))
	ex, m := newTestExecutor(t, f, time.Second)
	f.Set("break", fmt.Errorf("break: %w", rbd.ErrUnavailable))
	res, err := ex.Prepare(context.Background(), testRequest(1))
	if !errors.Is(err, rbd.ErrUnavailable) || !errors.Is(err, rbd.ErrPrepare) {
		t.Fatalf("err = %v", err)
	}
	if len(res.Steps) != 2 || !res.Steps[0].OK || res.Steps[1].OK || res.Error == "" {
		t.Fatalf("steps %+v", res.Steps)
	}
	if !strings.Contains(err.Error(), "step 2/2 break-lock") {
		t.Errorf("error does not say which step failed: %v", err)
	}
	f.Set("break", nil)
	res, err = ex.Prepare(context.Background(), testRequest(1))
	if err != nil || len(res.Steps) != 1 || res.Steps[0].Action.Kind != rbd.ActBreakLock {
		t.Fatalf("retry: %s %+v %v", res.Plan.Summary(), res.Steps, err)
	}
	if f.Breaks != 1 || testutil.ToFloat64(m.BlocklistChanges.WithLabelValues("add")) != 1 {
		t.Errorf("breaks %d, blocklist adds %v", f.Breaks, testutil.ToFloat64(m.BlocklistChanges.WithLabelValues("add")))
	}
}

// TestExecutorBounded: a call that never answers ends with rbd.ErrUnavailable
// at the call timeout, before anything was changed.
func TestExecutorBounded(t *testing.T) {
	for _, call := range []string{"owners", "lockers", "watchers", "blocklist", "add", "break"} {
		t.Run(call, func(t *testing.T) {
			f := rbdtest.New(rbd.OwnedForTest(rbd.PrevOwnForTest))
			f.Block[call] = true
			ex, m := newTestExecutor(t, f, 20*time.Millisecond)
			res, err := ex.Prepare(context.Background(), testRequest(1))
			if !errors.Is(err, rbd.ErrUnavailable) {
				t.Fatalf("err = %v, want rbd.ErrUnavailable", err)
			}
			if f.Breaks != 0 || (len(res.Steps) > 0 && res.Steps[len(res.Steps)-1].OK) {
				t.Errorf("breaks %d, steps %+v despite the failure", f.Breaks, res.Steps)
			}
			if got := testutil.CollectAndCount(m.PrepareSeconds); got != 1 {
				t.Errorf("prepare latency series %d, want 1 (result=error)", got)
			}
		})
	}
}

func TestExecutorVerifies(t *testing.T) {
	f := rbdtest.New(rbd.OwnedForTest(rbd.PrevOwnForTest))
	f.NoEffect = true
	ex, _ := newTestExecutor(t, f, time.Second)
	_, err := ex.Prepare(context.Background(), testRequest(1))
	if err == nil || !strings.Contains(err.Error(), "still owns the lock") {
		t.Fatalf("err = %v, want a verification failure", err)
	}
}

func TestExecutorConcurrentSameBoot(t *testing.T) {
	f := rbdtest.New(rbd.OwnedForTest(rbd.PrevOwnForTest))
	f.CallDelay = 5 * time.Millisecond
	ex, m := newTestExecutor(t, f, time.Second)
	var wg sync.WaitGroup
	res := make([]rbd.Result, 4)
	for i := range res {
		wg.Go(func() { res[i], _ = ex.Prepare(context.Background(), testRequest(7)) })
	}
	wg.Wait()
	reused := 0
	for _, r := range res {
		if r.Reused {
			reused++
		}
	}
	if f.Breaks != 1 || reused != 3 || testutil.ToFloat64(m.LockBreaks) != 1 {
		t.Fatalf("breaks %d, reused %d of 4", f.Breaks, reused)
	}
	// a refused caller never gets the cached success
	req := testRequest(7)
	req.Booting = false
	r, _ := ex.Prepare(context.Background(), req)
	if r.Reused || !r.Plan.Refused() {
		t.Fatalf("not-booting prepare got %s reused=%v", r.Plan.Summary(), r.Reused)
	}
}

func TestExecutorDryRun(t *testing.T) {
	f := rbdtest.New(rbd.OwnedForTest(rbd.PrevOwnForTest))
	ex, m := newTestExecutor(t, f, time.Second)
	req := testRequest(1)
	req.DryRun = true
	res, err := ex.Prepare(context.Background(), req)
	if err != nil || len(res.Plan.Actions) != 2 || len(res.Steps) != 0 || f.Breaks != 0 || testutil.ToFloat64(m.LockBreaks) != 0 {
		t.Fatalf("dry run: %+v %v", res, err)
	}
}
