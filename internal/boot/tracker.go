package boot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/event"
	"netboot/internal/store"
)

// Config configures a Tracker. Zero values mean the documented defaults.
type Config struct {
	// Inventory gives classes (deadlines, smoke checks), hosts, signatures
	// and webhooks; nil means an empty inventory.
	Inventory *config.Config
	// Store persists boots, events, reboot announcements and webhook
	// deliveries (the latter two when it implements store.Reports). Required.
	Store   store.Store
	Log     *zap.Logger           // nil: no logging
	Clock   clock.Clock           // nil: wall clock
	Metrics prometheus.Registerer // nil: metrics are kept but not exported
	// OSD answers ceph-osd-up smoke checks (the rbd part's Ceph connection).
	OSD OSDStatus
	// QueueSize bounds each of the two queues (Emit's events, ObserveLine's
	// lines; events go first). Default 65536.
	QueueSize int
	// ExpectDeadline is how long an announced reboot may take to start a
	// boot attempt before it is judged skipped. Default 15m.
	ExpectDeadline time.Duration
	// SmokeInterval is the pause between tries of a smoke check. Default 2s.
	SmokeInterval time.Duration
	// WebhookAttempts and WebhookBackoff tune webhook retries. Defaults 5
	// and 2s (doubling).
	WebhookAttempts int
	WebhookBackoff  time.Duration
	// HTTPClient is used for webhooks and http smoke checks.
	HTTPClient *http.Client
}

// DefaultExpectDeadline is Config.ExpectDeadline's default.
const DefaultExpectDeadline = 15 * time.Minute

// Tracker turns events into boot attempts and outcomes. It implements
// event.Sink. Create it with New and stop it with Close.
type Tracker struct {
	cfg     Config
	log     *zap.Logger
	clock   clock.Clock
	cat     *Catalogue
	checker *Checker
	hooks   *notifier
	m       *metrics
	reports store.Reports // nil if the store does not implement it

	events chan event.Event
	lines  chan lineItem
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// hooksCtx outlives ctx by up to closeGrace so that Close lets pending
	// webhook deliveries finish.
	hooksCtx    context.Context
	hooksCancel context.CancelFunc

	mu    sync.Mutex
	hosts map[string]*hostState

	cmu     sync.Mutex // guards changed and subs
	changed chan struct{}
	subs    map[chan Report]struct{}
}

// lineItem is one queued netconsole line.
type lineItem struct {
	host   string
	bootID int64
	at     time.Time
	line   string
}

// hostState is the tracker's live state of one host.
type hostState struct {
	report    *Report // current attempt; nil before the first
	timer     clock.Timer
	smokeStop context.CancelFunc
	ring      []string         // last lines of the current boot
	afterLeft int              // lines still to add to the last hit's excerpt
	hitCount  map[string]int   // signature hits per name in this attempt
	seen      map[string]bool  // netconsole regexes seen in this attempt
	watch     []*regexp.Regexp // the class's netconsole smoke regexes
	expect    *Expectation     // announced reboot not answered yet
	expTimer  clock.Timer
}

const (
	ringSize        = 15 // lines before a signature quoted in its excerpt
	linesAfter      = 10 // lines after it
	maxHitsPerName  = 5  // further hits of one signature only count
	maxHitsPerBoot  = 50
	maxSeenPatterns = 64
)

// New builds a tracker, restores the attempts and reboot announcements
// that were in progress when netbootd stopped (re-arming their deadlines)
// and starts its queue.
func New(ctx context.Context, cfg Config) (*Tracker, error) {
	if cfg.Store == nil {
		return nil, errors.New("new tracker: a store is required")
	}
	if cfg.Inventory == nil {
		cfg.Inventory = &config.Config{}
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1 << 16
	}
	cfg.ExpectDeadline = orDefault(cfg.ExpectDeadline, DefaultExpectDeadline)
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Transport: &http.Transport{Proxy: nil}}
	}
	if cfg.WebhookAttempts <= 0 {
		cfg.WebhookAttempts = DefaultWebhookAttempts
	}
	cat, err := NewCatalogue(cfg.Inventory.Signatures)
	if err != nil {
		return nil, fmt.Errorf("new tracker: %w", err)
	}
	t := &Tracker{cfg: cfg, log: cfg.Log, clock: cfg.Clock, cat: cat, m: newMetrics(cfg.Metrics),
		events: make(chan event.Event, cfg.QueueSize), lines: make(chan lineItem, cfg.QueueSize), hosts: map[string]*hostState{},
		changed: make(chan struct{}), subs: map[chan Report]struct{}{}}
	t.reports, _ = cfg.Store.(store.Reports)
	t.checker = &Checker{OSD: cfg.OSD, Interval: cfg.SmokeInterval, HTTP: cfg.HTTPClient}
	t.hooks = &notifier{hooks: cfg.Inventory.Webhooks, client: cfg.HTTPClient, attempts: cfg.WebhookAttempts,
		backoff: orDefault(cfg.WebhookBackoff, DefaultWebhookBackoff), store: t.reports, log: t.log, m: t.m, now: cfg.Clock.Now}
	t.ctx, t.cancel = context.WithCancel(context.WithoutCancel(ctx))
	t.hooksCtx, t.hooksCancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := t.restore(ctx); err != nil {
		t.cancel()
		return nil, fmt.Errorf("new tracker: %w", err)
	}
	t.wg.Go(t.drain)
	return t, nil
}

// Close stops the queue, running smoke checks and deadline timers, and
// waits for pending webhook deliveries to give up or finish.
func (t *Tracker) Close() error {
	t.cancel()
	t.wg.Wait()
	t.mu.Lock()
	for _, hs := range t.hosts {
		stopTimer(hs.timer)
		stopTimer(hs.expTimer)
	}
	t.mu.Unlock()
	done := make(chan struct{})
	go func() { t.hooks.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeGrace):
		t.log.Warn("tracker: webhook deliveries still pending at shutdown; giving up on them")
		t.hooksCancel()
		<-done
	}
	t.hooksCancel()
	return nil
}

// closeGrace is how long Close waits for pending webhook deliveries.
const closeGrace = 10 * time.Second

// SetOSD sets what answers ceph-osd-up smoke checks; the rbd part calls it
// with its go-ceph connection once that exists (netbootd sets it up after
// the tracker).
func (t *Tracker) SetOSD(o OSDStatus) { t.checker.SetOSD(o) }

// Catalogue returns the failure-signature catalogue in use.
func (t *Tracker) Catalogue() *Catalogue { return t.cat }

// Emit queues ev for recording; it never blocks. A full queue drops the
// event, logs it and counts it (netboot_tracker_dropped_total).
func (t *Tracker) Emit(ev event.Event) {
	if ev.Time.IsZero() {
		ev.Time = t.clock.Now()
	}
	select {
	case t.events <- ev:
	default:
		t.m.dropped.WithLabelValues("queue-full-event").Inc()
		t.log.Error("tracker: queue full, event dropped", zap.String("host", ev.Host), zap.String("kind", string(ev.Kind)))
	}
}

// ObserveLine is called by the netconsole collector for every stored line
// of host's boot bootID (the tracker's id; 0 means the current attempt). It
// never blocks: lines are matched against the failure signatures and the
// class's netconsole smoke checks from the tracker's queue.
func (t *Tracker) ObserveLine(host string, bootID int64, line string) {
	select {
	case t.lines <- lineItem{host: host, bootID: bootID, at: t.clock.Now(), line: line}:
	default:
		t.m.dropped.WithLabelValues("queue-full-line").Inc()
	}
}

// drain records queued events and observes queued lines in one
// goroutine; pending events always go before lines, so that a flood of
// log lines never delays or drops a boot's events.
func (t *Tracker) drain() {
	for {
		select {
		case ev := <-t.events:
			t.recordQueued(ev)
			continue
		default:
		}
		select {
		case <-t.ctx.Done():
			return
		case ev := <-t.events:
			t.recordQueued(ev)
		case l := <-t.lines:
			t.observe(l.host, l.bootID, l.at, l.line)
		}
	}
}

func (t *Tracker) recordQueued(ev event.Event) {
	if _, err := t.Record(t.ctx, ev); err != nil {
		t.log.Error("tracker: record queued event", zap.String("host", ev.Host), zap.String("kind", string(ev.Kind)), zap.Error(err))
	}
}

// Record records ev synchronously and returns it with BootID (and ID) set.
func (t *Tracker) Record(ctx context.Context, ev event.Event) (event.Event, error) {
	if ev.Host == "" {
		t.m.dropped.WithLabelValues("no-host").Inc()
		return ev, errors.New("record event: the event names no host")
	}
	if ev.Time.IsZero() {
		ev.Time = t.clock.Now()
	}
	// Once started, a recording completes: a caller that goes away (an HTTP
	// client disconnecting) must not leave memory and store disagreeing.
	ctx = context.WithoutCancel(ctx)
	t.mu.Lock()
	ev, err := t.recordLocked(ctx, t.state(ev.Host), ev)
	t.mu.Unlock()
	t.notify()
	return ev, err
}

// Current returns the id of host's current (latest) boot attempt.
func (t *Tracker) Current(host string) (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	hs, ok := t.hosts[host]
	if !ok || hs.report == nil {
		return 0, false
	}
	return hs.report.BootID, true
}

// InProgress reports whether host has a boot attempt in progress.
func (t *Tracker) InProgress(host string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	hs, ok := t.hosts[host]
	return ok && hs.report != nil && !hs.report.Terminal()
}

func (t *Tracker) state(host string) *hostState {
	hs, ok := t.hosts[host]
	if !ok {
		hs = &hostState{}
		t.hosts[host] = hs
	}
	return hs
}

// recordLocked is Record with t.mu held.
func (t *Tracker) recordLocked(ctx context.Context, hs *hostState, ev event.Event) (event.Event, error) {
	t.m.events.WithLabelValues(string(ev.Kind)).Inc()
	if ev.Kind == KindSkipped {
		return t.recordSkipped(ctx, hs, ev)
	}
	if opensAttempt(hs.report, ev) {
		if err := t.open(ctx, hs, ev); err != nil {
			return ev, err
		}
	}
	if hs.report == nil {
		return ev, t.addEvent(ctx, &ev)
	}
	r := hs.report
	wasTerminal := r.Terminal()
	ev.BootID = r.BootID
	advanced := r.apply(ev)
	if err := t.addEvent(ctx, &ev); err != nil {
		return ev, err
	}
	t.afterApply(ctx, hs, ev, advanced, wasTerminal)
	return ev, t.persist(ctx, r)
}

// afterApply acts on a report change: deadlines, smoke checks, outcome
// side effects.
func (t *Tracker) afterApply(ctx context.Context, hs *hostState, ev event.Event, advanced, wasTerminal bool) {
	r := hs.report
	if advanced {
		t.m.setStage(r.Host, r.LastStage)
		t.log.Info("boot: stage reached", zap.String("host", r.Host), zap.Int64("boot", r.BootID),
			zap.Stringer("stage", r.LastStage), zap.String("via", string(ev.Kind)))
	}
	switch {
	case r.Terminal() && !wasTerminal:
		stopTimer(hs.timer)
		if hs.smokeStop != nil {
			hs.smokeStop()
		}
		t.finished(ctx, *r)
	case advanced:
		t.arm(hs)
	}
	if !r.Terminal() && r.LastStage >= event.StageUserspace && r.SmokePlanned > 0 && hs.smokeStop == nil {
		t.startSmoke(hs)
	}
}

// open starts a new attempt for ev's host; an attempt still in progress is
// ended as restarted first.
func (t *Tracker) open(ctx context.Context, hs *hostState, ev event.Event) error {
	if old := hs.report; old != nil && !old.Terminal() {
		msg := fmt.Sprintf("the host started a new boot (%s) before this one reached ready (last stage %s)", ev.Kind, old.LastStage)
		rev := event.Event{Time: ev.Time, Host: ev.Host, Kind: KindRestarted, Failed: true, Message: msg}
		if _, err := t.recordLocked(ctx, hs, rev); err != nil {
			return err
		}
	}
	stopTimer(hs.timer)
	if hs.smokeStop != nil {
		hs.smokeStop()
		hs.smokeStop = nil
	}
	class, cl := t.classOf(ev.Host)
	r := newReport(ev.Host, class, ev.Time, deadlinesFor(cl), len(cl.Smoke))
	if hs.expect != nil && !ev.Time.Before(hs.expect.Announced) {
		r.Expected = hs.expect
		t.consumeExpectation(ctx, hs)
	}
	b := store.Boot{Host: r.Host, Started: r.Started, Updated: r.Updated, Outcome: r.Outcome}
	if err := t.cfg.Store.CreateBoot(ctx, &b); err != nil {
		return fmt.Errorf("open boot attempt of %s: %w", ev.Host, err)
	}
	r.BootID, r.Seq = b.ID, b.Seq
	hs.report, hs.ring, hs.afterLeft, hs.hitCount, hs.seen = r, nil, 0, map[string]int{}, map[string]bool{}
	hs.watch = t.watchList(ev.Host, cl)
	t.log.Info("boot: attempt opened", zap.String("host", r.Host), zap.Int64("boot", r.BootID),
		zap.Int("seq", r.Seq), zap.String("by", string(ev.Kind)), zap.String("client", ev.Attr("client")),
		zap.Bool("announced", r.Expected != nil))
	return nil
}

// classOf returns the host's class name and class (zero for unknown hosts).
func (t *Tracker) classOf(host string) (string, config.Class) {
	h, ok := t.cfg.Inventory.HostByName(host)
	if !ok {
		return "", config.Class{}
	}
	return h.Class, t.cfg.Inventory.ClassOf(h)
}

// finished is run once when an attempt gets its final outcome.
func (t *Tracker) finished(ctx context.Context, r Report) {
	t.m.boots.WithLabelValues(r.Host, r.Class, r.Outcome).Inc()
	fields := []zap.Field{zap.String("host", r.Host), zap.Int64("boot", r.BootID), zap.String("outcome", r.Outcome),
		zap.String("reason", r.Reason), zap.Stringer("stage", r.LastStage), zap.String("message", r.Message)}
	switch r.Outcome {
	case store.OutcomeSucceeded:
		t.m.lastSuccess.WithLabelValues(r.Host).Set(float64(r.Ended.UnixMilli()) / 1000)
		t.log.Info("boot: succeeded", fields...)
	case store.OutcomeStuck:
		t.m.stuck.WithLabelValues(r.Host, r.LastStage.String()).Inc()
		t.log.Warn("boot: stuck", fields...)
	case store.OutcomeSkipped:
		t.m.skipped.WithLabelValues(r.Host).Inc()
		t.log.Warn("boot: announced reboot skipped", fields...)
	default:
		for _, c := range r.Regressions {
			t.m.regressions.WithLabelValues(r.Host, c).Inc()
		}
		t.log.Warn("boot: failed", fields...)
	}
	t.hooks.notify(t.hooksCtx, r)
}

// arm (re)starts the deadline of the attempt's current stage.
func (t *Tracker) arm(hs *hostState) {
	stopTimer(hs.timer)
	hs.timer = nil
	r := hs.report
	if r.Deadline.IsZero() {
		return
	}
	host, bootID, stage, at := r.Host, r.BootID, r.LastStage, r.Deadline
	d := r.deadlineFor(stage + 1)
	hs.timer = t.clock.AfterFunc(at.Sub(t.clock.Now()), func() { t.deadlinePassed(host, bootID, stage, d, at) })
}

// deadlinePassed judges the attempt stuck (as of the deadline, at) if it
// is still at stage.
func (t *Tracker) deadlinePassed(host string, bootID int64, stage event.Stage, d time.Duration, at time.Time) {
	msg := stuckMessage(stage, d)
	ev := event.Event{Time: at, Host: host, Kind: KindStuck, Failed: true, Message: msg,
		Attrs: map[string]string{"stage": stage.String(), "deadline": d.String()}}
	t.recordFor(bootID, stage, ev)
}

// stuckMessage says where a boot stopped and which deadline it missed.
func stuckMessage(stage event.Stage, d time.Duration) string {
	return fmt.Sprintf("no progress past %s: %s not reached within its deadline of %s", stage, stage+1, d)
}

// recordFor records ev only if host's current attempt is still bootID (and,
// if stage is set, still at stage and in progress).
func (t *Tracker) recordFor(bootID int64, stage event.Stage, ev event.Event) {
	t.mu.Lock()
	hs := t.state(ev.Host)
	r := hs.report
	if r == nil || r.BootID != bootID || (stage != event.StageNone && (r.LastStage != stage || r.Terminal())) {
		t.mu.Unlock()
		t.m.dropped.WithLabelValues("stale-follow-up").Inc()
		t.log.Debug("tracker: stale follow-up dropped", zap.String("host", ev.Host), zap.String("kind", string(ev.Kind)))
		return
	}
	_, err := t.recordLocked(t.ctx, hs, ev)
	t.mu.Unlock()
	if err != nil {
		t.log.Error("tracker: record", zap.String("host", ev.Host), zap.String("kind", string(ev.Kind)), zap.Error(err))
	}
	t.notify()
}

func (t *Tracker) addEvent(ctx context.Context, ev *event.Event) error {
	if err := t.cfg.Store.AddEvent(ctx, ev); err != nil {
		return fmt.Errorf("record %s event of %s: %w", ev.Kind, ev.Host, err)
	}
	return nil
}

// persist writes the report into its boot row.
func (t *Tracker) persist(ctx context.Context, r *Report) error {
	state, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("persist boot %d: %w", r.BootID, err)
	}
	b := store.Boot{ID: r.BootID, Host: r.Host, Seq: r.Seq, Started: r.Started, Updated: r.Updated, Ended: r.Ended,
		Stage: r.LastStage, Outcome: r.Outcome, Reason: r.Reason, State: state}
	if err := t.cfg.Store.UpdateBoot(ctx, &b); err != nil {
		return fmt.Errorf("persist boot %d: %w", r.BootID, err)
	}
	t.publish(*r)
	return nil
}

func stopTimer(tm clock.Timer) {
	if tm != nil {
		tm.Stop()
	}
}

// seenFor returns the netconsole matcher of host's attempt bootID: it
// compiles the pattern into the host's watch list and answers whether a line
// of this boot matched it (lines observed before the check started count,
// because ObserveLine keeps them in the attempt's ring and seen set).
func (t *Tracker) seenFor(host string, bootID int64) seenFunc {
	return func(re *regexp.Regexp) bool {
		t.mu.Lock()
		defer t.mu.Unlock()
		hs := t.state(host)
		if hs.report == nil || hs.report.BootID != bootID {
			return false
		}
		return hs.seen[re.String()]
	}
}
