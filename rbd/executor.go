package rbd

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"

	"netboot/internal/clock"
)

// ExecutorConfig tunes the executor. Zero values mean the defaults.
type ExecutorConfig struct {
	// CallTimeout bounds every single Ceph call (config ceph.timeout).
	// Default 10s.
	CallTimeout time.Duration
	// WatchWait bounds the wait for a fenced owner's watch to disappear
	// after blocklisting it (informational; the lock is broken anyway).
	// Default 3s.
	WatchWait time.Duration
	// PollInterval between watcher polls. Default 50ms.
	PollInterval time.Duration
}

func (c *ExecutorConfig) setDefaults() {
	if c.CallTimeout <= 0 {
		c.CallTimeout = 10 * time.Second
	}
	if c.WatchWait <= 0 {
		c.WatchWait = 3 * time.Second
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 50 * time.Millisecond
	}
}

// Request asks for one host's root image to be prepared (or planned).
type Request struct {
	Host     string
	Image    Image
	HostIP   netip.Addr
	CallerIP netip.Addr
	Booting  bool
	// BootID is the host's boot attempt; a second prepare for the same
	// boot after a successful one returns the first result (Reused).
	BootID   int64
	Recorded Addr
	Policy   Policy
	// DryRun plans without changing anything (`netbootctl rbd plan`).
	DryRun bool
}

func (r Request) input(obs Observation) Input {
	return Input{Host: r.Host, Image: r.Image, HostIP: r.HostIP, Booting: r.Booting,
		CallerIP: r.CallerIP, Recorded: r.Recorded, Observed: obs, Policy: r.Policy}
}

// Step is one executed action and how its verification went.
type Step struct {
	Action   Action        `json:"action"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	OK       bool          `json:"ok"`
	Error    string        `json:"error,omitempty"`
	Detail   string        `json:"detail,omitempty"`
}

// Result is what a prepare did.
type Result struct {
	BootID   int64         `json:"boot_id"`
	Plan     Plan          `json:"plan"`
	Observed Observation   `json:"observed"`
	Steps    []Step        `json:"steps"`
	DryRun   bool          `json:"dry_run,omitempty"`
	Reused   bool          `json:"reused,omitempty"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	Error    string        `json:"error,omitempty"`
}

// OK reports whether the root is ready to map: the plan was not refused
// and every step succeeded.
func (r Result) OK() bool { return r.Error == "" && !r.Plan.Refused() }

// Executor observes, decides and applies plans. It serialises per image:
// two concurrent prepares of one image run one after the other, and the
// second sees the first's result (or re-plans against fresh state).
type Executor struct {
	cluster Cluster
	cfg     ExecutorConfig
	log     *zap.Logger
	clock   clock.Clock
	metrics *Metrics

	mu    sync.Mutex
	slots map[Image]*slot
}

type slot struct {
	sem  chan struct{}
	last *Result // last successful, non-dry-run result
}

// NewExecutor returns an executor over cluster. metrics may be nil.
func NewExecutor(cluster Cluster, cfg ExecutorConfig, log *zap.Logger, clk clock.Clock, metrics *Metrics) *Executor {
	cfg.setDefaults()
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	return &Executor{cluster: cluster, cfg: cfg, log: log, clock: clk, metrics: metrics, slots: map[Image]*slot{}}
}

// ErrPrepare wraps every error Prepare returns; errors.Is(err, ErrUnavailable)
// etc. still work through it.
var ErrPrepare = errors.New("prepare root")

// Prepare observes the image, decides, and (unless DryRun) applies the
// plan, verifying each step. A refusal is not an error: it is in
// Result.Plan.Refusal. An error means Ceph failed; Result.Steps says
// exactly which steps were done before it, and a retry re-plans from the
// state it left (every step is safe to re-plan: a done blocklist-add is
// observed and skipped, a broken lock is no longer owned).
func (e *Executor) Prepare(ctx context.Context, req Request) (Result, error) {
	start := e.clock.Now()
	res := Result{BootID: req.BootID, DryRun: req.DryRun, Started: start, Steps: []Step{}}
	s, err := e.acquire(ctx, req.Image)
	if err != nil {
		return e.finish(res, req, fmt.Errorf("%w %s: waiting for another prepare of %s: %w", ErrPrepare, req.Host, req.Image, err))
	}
	defer func() { <-s.sem }()
	if !req.DryRun && req.BootID != 0 && s.last != nil && s.last.BootID == req.BootID && checkCaller(req.input(Observation{})) == nil {
		r := *s.last
		r.Reused = true
		e.log.Info("rbd prepare reused", zap.String("host", req.Host), zap.Int64("boot", req.BootID), zap.String("image", req.Image.String()))
		return r, nil
	}
	obs, err := e.Observe(ctx, req.Image)
	res.Observed = obs
	if err != nil {
		return e.finish(res, req, fmt.Errorf("%w %s: observe %s: %w", ErrPrepare, req.Host, req.Image, err))
	}
	res.Plan = Decide(req.input(obs))
	if res.Plan.Refused() || req.DryRun {
		return e.finish(res, req, nil)
	}
	for _, a := range res.Plan.Actions {
		st, err := e.apply(ctx, req.Image, a)
		res.Steps = append(res.Steps, st)
		if err != nil {
			return e.finish(res, req, fmt.Errorf("%w %s: step %d/%d %s: %w (steps before it are done and recorded)",
				ErrPrepare, req.Host, len(res.Steps), len(res.Plan.Actions), a, err))
		}
	}
	res, err = e.finish(res, req, nil)
	cp := res
	s.last = &cp
	return res, err
}

func (e *Executor) finish(res Result, req Request, err error) (Result, error) {
	res.Duration = e.clock.Now().Sub(res.Started)
	result := "ok"
	fields := []zap.Field{zap.String("host", req.Host), zap.Int64("boot", req.BootID), zap.String("image", req.Image.String()),
		zap.Bool("dry_run", req.DryRun), zap.Duration("took", res.Duration)}
	switch {
	case err != nil:
		result = "error"
		res.Error = err.Error()
		e.log.Error("rbd prepare failed", append(fields, zap.Error(err), zap.Int("steps_done", len(res.Steps)))...)
	case res.Plan.Refused():
		result = "refused"
		if !req.DryRun {
			e.metrics.Refusals.WithLabelValues(string(res.Plan.Refusal.Reason)).Inc()
		}
		e.log.Warn("rbd prepare refused", append(fields, zap.String("reason", string(res.Plan.Refusal.Reason)),
			zap.String("message", res.Plan.Refusal.Message), zap.Stringer("holder", res.Plan.Refusal.Holder))...)
	default:
		e.log.Info("rbd prepare done", append(fields, zap.String("plan", res.Plan.Summary()), zap.Strings("notes", res.Plan.Notes))...)
	}
	if !req.DryRun {
		if err != nil {
			e.metrics.Refusals.WithLabelValues(string(ReasonCephError)).Inc()
		}
		e.metrics.PrepareSeconds.WithLabelValues(result).Observe(res.Duration.Seconds())
	}
	return res, err
}

// acquire takes the image's slot, waiting while another prepare holds it.
func (e *Executor) acquire(ctx context.Context, img Image) (*slot, error) {
	e.mu.Lock()
	s, ok := e.slots[img]
	if !ok {
		s = &slot{sem: make(chan struct{}, 1)}
		e.slots[img] = s
	}
	e.mu.Unlock()
	select {
	case s.sem <- struct{}{}:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Forget drops the remembered result of img's last prepare, so that the
// next prepare re-plans even within the same boot attempt. The service
// calls it when a host reports a new mapped client.
func (e *Executor) Forget(img Image) {
	e.mu.Lock()
	s, ok := e.slots[img]
	e.mu.Unlock()
	if !ok {
		return
	}
	s.sem <- struct{}{}
	s.last = nil
	<-s.sem
}

// Observe reads the lock owners, lockers, watchers and blocklist.
func (e *Executor) Observe(ctx context.Context, img Image) (Observation, error) {
	var obs Observation
	var err error
	if err = e.call(ctx, "lock-owners", func(c context.Context) (err error) { obs.Owners, err = e.cluster.LockOwners(c, img); return }); err != nil {
		return obs, err
	}
	if err = e.call(ctx, "lockers", func(c context.Context) (err error) { obs.Lockers, err = e.cluster.Lockers(c, img); return }); err != nil {
		return obs, err
	}
	if err = e.call(ctx, "watchers", func(c context.Context) (err error) { obs.Watchers, err = e.cluster.Watchers(c, img); return }); err != nil {
		return obs, err
	}
	err = e.call(ctx, "blocklist-ls", func(c context.Context) (err error) { obs.Blocklist, err = e.cluster.Blocklist(c); return })
	return obs, err
}

// call runs one Ceph call under its own deadline.
func (e *Executor) call(ctx context.Context, name string, f func(context.Context) error) error {
	c, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
	defer cancel()
	err := f(c)
	if err == nil {
		return nil
	}
	e.metrics.CephErrors.WithLabelValues(name).Inc()
	if errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrUnavailable) {
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return fmt.Errorf("%s (bound %s): %w", name, e.cfg.CallTimeout, err)
}

func (e *Executor) apply(ctx context.Context, img Image, a Action) (Step, error) {
	st := Step{Action: a, Started: e.clock.Now()}
	var detail string
	var err error
	switch a.Kind {
	case ActBlocklistAdd:
		detail, err = e.blocklistAdd(ctx, img, a)
	case ActBreakLock:
		detail, err = e.breakLock(ctx, img, a)
	case ActBlocklistRemove:
		detail, err = e.blocklistRemove(ctx, a)
	default:
		err = fmt.Errorf("unknown action %q", a.Kind)
	}
	st.Duration = e.clock.Now().Sub(st.Started)
	st.Detail = detail
	st.OK = err == nil
	if err != nil {
		st.Error = err.Error()
	}
	e.log.Info("rbd step", zap.String("image", img.String()), zap.String("action", a.String()), zap.Bool("ok", st.OK),
		zap.String("detail", detail), zap.String("error", st.Error), zap.Duration("took", st.Duration))
	return st, err
}

func (e *Executor) blocklistAdd(ctx context.Context, img Image, a Action) (string, error) {
	if err := e.call(ctx, "blocklist-add", func(c context.Context) error { return e.cluster.BlocklistAdd(c, a.Addr, a.Expiry) }); err != nil {
		return "", err
	}
	e.metrics.BlocklistChanges.WithLabelValues("add").Inc()
	var bl []BlocklistEntry
	if err := e.call(ctx, "blocklist-ls", func(c context.Context) (err error) { bl, err = e.cluster.Blocklist(c); return }); err != nil {
		return "", fmt.Errorf("verify: %w", err)
	}
	if !blocklistedExactly(bl, a.Addr) {
		return "", fmt.Errorf("verify: %s is not in the blocklist after adding it", a.Addr)
	}
	return e.waitWatchGone(ctx, img, a.Addr), nil
}

// waitWatchGone polls the watchers until the fenced owner's watch is gone
// (the OSD evicts watches of blocklisted clients) or WatchWait passes.
func (e *Executor) waitWatchGone(ctx context.Context, img Image, owner Addr) string {
	start := e.clock.Now()
	for {
		var ws []Watcher
		err := e.call(ctx, "watchers", func(c context.Context) (err error) { ws, err = e.cluster.Watchers(c, img); return })
		waited := e.clock.Now().Sub(start)
		switch {
		case err != nil:
			return fmt.Sprintf("blocklisted; watch check failed: %v", err)
		case !watchedBy(ws, owner):
			return fmt.Sprintf("blocklisted; owner's watch gone after %s", waited.Round(time.Millisecond))
		case waited >= e.cfg.WatchWait:
			return fmt.Sprintf("blocklisted; owner's watch still present after %s (expires by itself)", waited.Round(time.Millisecond))
		}
		if !e.sleep(ctx, e.cfg.PollInterval) {
			return "blocklisted; watch check cancelled"
		}
	}
}

func (e *Executor) sleep(ctx context.Context, d time.Duration) bool {
	done := make(chan struct{})
	t := e.clock.AfterFunc(d, func() { close(done) })
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

func (e *Executor) breakLock(ctx context.Context, img Image, a Action) (string, error) {
	err := e.call(ctx, "break-lock", func(c context.Context) error { return e.cluster.BreakLock(c, img, a.Addr) })
	detail := "lock broken"
	if err != nil && !errors.Is(err, ErrBusy) {
		return "", err
	}
	if err != nil {
		detail = "owner no longer held the lock (EBUSY): nothing broken"
	} else {
		e.metrics.LockBreaks.Inc()
	}
	var owners []LockOwner
	if err := e.call(ctx, "lock-owners", func(c context.Context) (err error) { owners, err = e.cluster.LockOwners(c, img); return }); err != nil {
		return detail, fmt.Errorf("verify: %w", err)
	}
	for _, o := range owners {
		if o.Addr == a.Addr {
			return detail, fmt.Errorf("verify: %s still owns the lock", a.Addr)
		}
	}
	return detail, nil
}

func (e *Executor) blocklistRemove(ctx context.Context, a Action) (string, error) {
	if err := e.call(ctx, "blocklist-rm", func(c context.Context) error { return e.cluster.BlocklistRemove(c, a.Entry) }); err != nil {
		return "", err
	}
	e.metrics.BlocklistChanges.WithLabelValues("remove").Inc()
	var bl []BlocklistEntry
	if err := e.call(ctx, "blocklist-ls", func(c context.Context) (err error) { bl, err = e.cluster.Blocklist(c); return }); err != nil {
		return "", fmt.Errorf("verify: %w", err)
	}
	for _, x := range bl {
		if x.IsRange() == a.Entry.IsRange() && x.Addr == a.Entry.Addr && x.Range == a.Entry.Range {
			return "", fmt.Errorf("verify: %s still in the blocklist after removing it", a.Entry)
		}
	}
	return "removed", nil
}
