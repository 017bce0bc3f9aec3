package rbd

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
)

// fakeCluster is an in-memory Cluster for the executor's own logic.
type fakeCluster struct {
	mu        sync.Mutex
	obs       Observation
	fail      map[string]error // call name -> error
	block     map[string]bool  // call name -> hang until ctx is done
	breaks    int
	noEffect  bool // BreakLock "succeeds" without removing the owner
	callDelay time.Duration
}

func newFake(o Observation) *fakeCluster {
	return &fakeCluster{obs: o, fail: map[string]error{}, block: map[string]bool{}}
}

func (f *fakeCluster) enter(ctx context.Context, name string) error {
	f.mu.Lock()
	err, blk, d := f.fail[name], f.block[name], f.callDelay
	f.mu.Unlock()
	if d > 0 {
		time.Sleep(d)
	}
	if blk {
		<-ctx.Done()
		return fmt.Errorf("%s: %w", name, ctx.Err())
	}
	return err
}

func (f *fakeCluster) LockOwners(ctx context.Context, _ Image) ([]LockOwner, error) {
	if err := f.enter(ctx, "owners"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]LockOwner(nil), f.obs.Owners...), nil
}

func (f *fakeCluster) Lockers(ctx context.Context, _ Image) (Lockers, error) {
	if err := f.enter(ctx, "lockers"); err != nil {
		return Lockers{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.obs.Lockers, nil
}

func (f *fakeCluster) Watchers(ctx context.Context, _ Image) ([]Watcher, error) {
	if err := f.enter(ctx, "watchers"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Watcher(nil), f.obs.Watchers...), nil
}

func (f *fakeCluster) Blocklist(ctx context.Context) ([]BlocklistEntry, error) {
	if err := f.enter(ctx, "blocklist"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]BlocklistEntry(nil), f.obs.Blocklist...), nil
}

func (f *fakeCluster) BlocklistAdd(ctx context.Context, a Addr, _ time.Duration) error {
	if err := f.enter(ctx, "add"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.obs.Blocklist = append(f.obs.Blocklist, BlocklistEntry{Addr: a})
	var ws []Watcher
	for _, w := range f.obs.Watchers {
		if w.Addr != a {
			ws = append(ws, w) // the OSD evicts a blocklisted client's watch
		}
	}
	f.obs.Watchers = ws
	return nil
}

func (f *fakeCluster) BlocklistRemove(ctx context.Context, e BlocklistEntry) error {
	if err := f.enter(ctx, "rm"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var kept []BlocklistEntry
	for _, x := range f.obs.Blocklist {
		if x != e {
			kept = append(kept, x)
		}
	}
	f.obs.Blocklist = kept
	return nil
}

func (f *fakeCluster) BreakLock(ctx context.Context, _ Image, owner Addr) error {
	if err := f.enter(ctx, "break"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.obs.Owners) == 0 || f.obs.Owners[0].Addr != owner {
		return fmt.Errorf("break: %w", ErrBusy)
	}
	f.breaks++
	if !f.noEffect {
		f.obs.Owners, f.obs.Lockers = nil, Lockers{}
	}
	return nil
}

func (f *fakeCluster) HostKey(context.Context, string, Caps) (string, error) { return "key", nil }
func (f *fakeCluster) ImageID(context.Context, Image) (string, error)        { return "abc", nil }

func (f *fakeCluster) set(name string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[name] = err
}

func newTestExecutor(t *testing.T, f *fakeCluster, timeout time.Duration) (*Executor, *Metrics) {
	m := NewMetrics(nil)
	return NewExecutor(f, ExecutorConfig{CallTimeout: timeout, WatchWait: 200 * time.Millisecond, PollInterval: time.Millisecond},
		zaptest.NewLogger(t), clock.Real{}, m), m
}

func testRequest(boot int64) Request {
	ip := netip.MustParseAddr(hostIP)
	return Request{Host: "cm4-03", Image: Image{Pool: "rbd", Name: "cm4-03-root"}, HostIP: ip, CallerIP: ip, Booting: true,
		BootID: boot, Recorded: MustParseAddr(prevOwn), Policy: Policy{RemoveRangeBlocklist: true, BlocklistExpiry: time.Hour}}
}

func TestExecutorHandover(t *testing.T) {
	f := newFake(owned(prevOwn))
	ex, m := newTestExecutor(t, f, time.Second)
	res, err := ex.Prepare(context.Background(), testRequest(1))
	if err != nil || !res.OK() || len(res.Steps) != 2 {
		t.Fatalf("prepare: %+v %v", res, err)
	}
	if !strings.Contains(res.Steps[0].Detail, "watch gone") || res.Steps[1].Detail != "lock broken" {
		t.Errorf("step details %q, %q", res.Steps[0].Detail, res.Steps[1].Detail)
	}
	if f.breaks != 1 || testutil.ToFloat64(m.LockBreaks) != 1 || testutil.ToFloat64(m.BlocklistChanges.WithLabelValues("add")) != 1 {
		t.Errorf("breaks %d, metrics %v", f.breaks, testutil.ToFloat64(m.LockBreaks))
	}
}

// TestExecutorHalfDone: a failure after the fence is reported step by
// step, and a retry finishes from the state it left, breaking once.
func TestExecutorHalfDone(t *testing.T) {
	f := newFake(owned(prevOwn))
	ex, m := newTestExecutor(t, f, time.Second)
	f.set("break", fmt.Errorf("break: %w", ErrUnavailable))
	res, err := ex.Prepare(context.Background(), testRequest(1))
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrPrepare) {
		t.Fatalf("err = %v", err)
	}
	if len(res.Steps) != 2 || !res.Steps[0].OK || res.Steps[1].OK || res.Error == "" {
		t.Fatalf("steps %+v", res.Steps)
	}
	if !strings.Contains(err.Error(), "step 2/2 break-lock") {
		t.Errorf("error does not say which step failed: %v", err)
	}
	f.set("break", nil)
	res, err = ex.Prepare(context.Background(), testRequest(1))
	if err != nil || len(res.Steps) != 1 || res.Steps[0].Action.Kind != ActBreakLock {
		t.Fatalf("retry: %s %+v %v", res.Plan.Summary(), res.Steps, err)
	}
	if f.breaks != 1 || testutil.ToFloat64(m.BlocklistChanges.WithLabelValues("add")) != 1 {
		t.Errorf("breaks %d, blocklist adds %v", f.breaks, testutil.ToFloat64(m.BlocklistChanges.WithLabelValues("add")))
	}
}

// TestExecutorBounded: a call that never answers ends with ErrUnavailable
// at the call timeout, before anything was changed.
func TestExecutorBounded(t *testing.T) {
	for _, call := range []string{"owners", "lockers", "watchers", "blocklist", "add", "break"} {
		t.Run(call, func(t *testing.T) {
			f := newFake(owned(prevOwn))
			f.block[call] = true
			ex, m := newTestExecutor(t, f, 20*time.Millisecond)
			res, err := ex.Prepare(context.Background(), testRequest(1))
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			if f.breaks != 0 || (len(res.Steps) > 0 && res.Steps[len(res.Steps)-1].OK) {
				t.Errorf("breaks %d, steps %+v despite the failure", f.breaks, res.Steps)
			}
			if got := testutil.CollectAndCount(m.PrepareSeconds); got != 1 {
				t.Errorf("prepare latency series %d, want 1 (result=error)", got)
			}
		})
	}
}

func TestExecutorVerifies(t *testing.T) {
	f := newFake(owned(prevOwn))
	f.noEffect = true
	ex, _ := newTestExecutor(t, f, time.Second)
	_, err := ex.Prepare(context.Background(), testRequest(1))
	if err == nil || !strings.Contains(err.Error(), "still owns the lock") {
		t.Fatalf("err = %v, want a verification failure", err)
	}
}

func TestExecutorConcurrentSameBoot(t *testing.T) {
	f := newFake(owned(prevOwn))
	f.callDelay = 5 * time.Millisecond
	ex, m := newTestExecutor(t, f, time.Second)
	var wg sync.WaitGroup
	res := make([]Result, 4)
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
	if f.breaks != 1 || reused != 3 || testutil.ToFloat64(m.LockBreaks) != 1 {
		t.Fatalf("breaks %d, reused %d of 4", f.breaks, reused)
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
	f := newFake(owned(prevOwn))
	ex, m := newTestExecutor(t, f, time.Second)
	req := testRequest(1)
	req.DryRun = true
	res, err := ex.Prepare(context.Background(), req)
	if err != nil || len(res.Plan.Actions) != 2 || len(res.Steps) != 0 || f.breaks != 0 || testutil.ToFloat64(m.LockBreaks) != 0 {
		t.Fatalf("dry run: %+v %v", res, err)
	}
}
