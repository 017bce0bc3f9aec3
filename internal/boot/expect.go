package boot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"netboot/internal/event"
	"netboot/internal/store"
)

// ErrUnknownHost is returned for a host the inventory does not know.
var ErrUnknownHost = errors.New("unknown host")

// baselineTries bounds the tries of each smoke check in a baseline: the host
// is up, so a check that fails twice is recorded as failing before the
// reboot (and its failing afterwards is then no regression).
const baselineTries = 2

// ExpectReboot announces that host is about to reboot: it runs the class's
// smoke checks as a baseline, records the announcement (a RebootExpected
// event on the current attempt) and arms its deadline. The next boot
// attempt answers it; if none starts within deadline (0: the tracker's
// default) a skipped report is made.
func (t *Tracker) ExpectReboot(ctx context.Context, host string, deadline time.Duration) (Expectation, error) {
	h, ok := t.cfg.Inventory.HostByName(host)
	if !ok {
		return Expectation{}, fmt.Errorf("expect reboot of %s: %w", host, ErrUnknownHost)
	}
	cl := t.cfg.Inventory.ClassOf(h)
	vars := t.cfg.Inventory.HostVariables(h)
	bootID, _ := t.Current(host)
	seen := t.seenFor(host, bootID)
	baseline := make([]SmokeResult, 0, len(cl.Smoke))
	for _, chk := range cl.Smoke {
		res := t.checker.Run(ctx, chk, vars, seen, baselineTries)
		res.Time = t.clock.Now()
		baseline = append(baseline, res)
	}
	if err := ctx.Err(); err != nil {
		return Expectation{}, fmt.Errorf("expect reboot of %s: baseline: %w", host, err)
	}
	now := t.clock.Now()
	x := &Expectation{Host: host, Announced: now, Deadline: now.Add(orDefault(deadline, t.cfg.ExpectDeadline)), Baseline: baseline}
	if err := t.saveExpectation(ctx, x); err != nil {
		return Expectation{}, err
	}
	t.mu.Lock()
	hs := t.state(host)
	if hs.expect != nil {
		t.log.Info("boot: earlier reboot announcement replaced", zap.String("host", host), zap.Time("announced", hs.expect.Announced))
		t.consumeExpectation(ctx, hs)
	}
	hs.expect = x
	t.armExpectation(hs, x)
	ev := event.Event{Time: now, Host: host, Kind: event.RebootExpected,
		Message: fmt.Sprintf("reboot announced; a boot must start by %s; baseline: %s", x.Deadline.Format(time.RFC3339), baselineSummary(baseline)),
		Attrs:   map[string]string{"deadline": x.Deadline.Format(time.RFC3339)}}
	_, err := t.recordLocked(ctx, hs, ev)
	t.mu.Unlock()
	t.notify()
	t.log.Info("boot: reboot announced", zap.String("host", host), zap.Time("deadline", x.Deadline),
		zap.String("baseline", baselineSummary(baseline)))
	return *x, err
}

func baselineSummary(results []SmokeResult) string {
	if len(results) == 0 {
		return "no smoke checks"
	}
	var parts []string
	for _, r := range results {
		state := "pass"
		if !r.OK {
			state = "FAIL"
		}
		parts = append(parts, r.Name+"="+state)
	}
	return strings.Join(parts, " ")
}

func (t *Tracker) saveExpectation(ctx context.Context, x *Expectation) error {
	if t.reports == nil {
		return nil
	}
	baseline, err := json.Marshal(x.Baseline)
	if err != nil {
		return fmt.Errorf("save reboot announcement: %w", err)
	}
	sx := store.Expectation{Host: x.Host, Announced: x.Announced, Deadline: x.Deadline, Baseline: baseline}
	if err := t.reports.AddExpectation(ctx, &sx); err != nil {
		return fmt.Errorf("save reboot announcement: %w", err)
	}
	x.ID = sx.ID
	return nil
}

// armExpectation starts the timer that judges x skipped.
func (t *Tracker) armExpectation(hs *hostState, x *Expectation) {
	stopTimer(hs.expTimer)
	hs.expTimer = t.clock.AfterFunc(x.Deadline.Sub(t.clock.Now()), func() { t.expectationExpired(x) })
}

func (t *Tracker) expectationExpired(x *Expectation) {
	t.mu.Lock()
	hs := t.state(x.Host)
	if hs.expect != x {
		t.mu.Unlock()
		return
	}
	msg := fmt.Sprintf("a reboot was announced at %s but no boot attempt started by its deadline %s",
		x.Announced.Format(time.RFC3339), x.Deadline.Format(time.RFC3339))
	ev := event.Event{Time: x.Deadline, Host: x.Host, Kind: KindSkipped, Failed: true, Message: msg}
	_, err := t.recordLocked(t.ctx, hs, ev)
	t.mu.Unlock()
	if err != nil {
		t.log.Error("tracker: record skipped reboot", zap.String("host", x.Host), zap.Error(err))
	}
	t.notify()
}

// consumeExpectation forgets hs's pending announcement.
func (t *Tracker) consumeExpectation(ctx context.Context, hs *hostState) {
	x := hs.expect
	stopTimer(hs.expTimer)
	hs.expect, hs.expTimer = nil, nil
	if x != nil && x.ID != 0 && t.reports != nil {
		if err := t.reports.DeleteExpectation(context.WithoutCancel(ctx), x.ID); err != nil {
			t.log.Error("tracker: delete reboot announcement", zap.String("host", x.Host), zap.Error(err))
		}
	}
}

// recordSkipped makes the skipped report of hs's pending announcement.
func (t *Tracker) recordSkipped(ctx context.Context, hs *hostState, ev event.Event) (event.Event, error) {
	x := hs.expect
	if x == nil {
		return ev, t.addEvent(ctx, &ev)
	}
	class, cl := t.classOf(ev.Host)
	r := newReport(ev.Host, class, x.Announced, deadlinesFor(cl), len(cl.Smoke))
	r.Expected = x
	b := store.Boot{Host: r.Host, Started: r.Started, Updated: r.Updated, Outcome: r.Outcome}
	if err := t.cfg.Store.CreateBoot(ctx, &b); err != nil {
		return ev, fmt.Errorf("record skipped reboot of %s: %w", ev.Host, err)
	}
	r.BootID, r.Seq = b.ID, b.Seq
	ev.BootID = r.BootID
	r.apply(ev)
	t.consumeExpectation(ctx, hs)
	if err := t.addEvent(ctx, &ev); err != nil {
		return ev, err
	}
	if hs.report == nil || hs.report.Terminal() {
		hs.report = r
	}
	t.finished(ctx, *r)
	return ev, t.persist(ctx, r)
}

// startSmoke runs the class's smoke checks for hs's attempt in the
// background; results and the conclusion are recorded as events.
func (t *Tracker) startSmoke(hs *hostState) {
	r := hs.report
	host, bootID, class := r.Host, r.BootID, r.Class
	_, cl := t.classOf(host)
	vars := t.hostVars(host)
	var baseline []SmokeResult
	if r.Expected != nil {
		baseline = r.Expected.Baseline
	}
	ctx, cancel := context.WithCancel(t.ctx)
	hs.smokeStop = cancel
	t.log.Info("boot: smoke checks started", zap.String("host", host), zap.Int64("boot", bootID), zap.Int("checks", len(cl.Smoke)))
	t.wg.Go(func() {
		defer cancel()
		results := t.checker.RunAll(ctx, cl.Smoke, vars, t.seenFor(host, bootID), func(res SmokeResult) {
			res.Time = t.clock.Now()
			t.m.smoke.WithLabelValues(class, res.Name, passFail(res.OK)).Inc()
			t.log.Info("boot: smoke check", zap.String("host", host), zap.Int64("boot", bootID), zap.String("check", res.Name),
				zap.Bool("ok", res.OK), zap.Int("attempts", res.Attempts), zap.String("message", res.Message))
			if ctx.Err() == nil {
				t.recordFor(bootID, event.StageNone, smokeEvent(host, res))
			}
		})
		if ctx.Err() == nil {
			t.recordFor(bootID, event.StageNone, conclusion(host, t.clock.Now(), results, baseline))
		}
	})
}

func passFail(ok bool) string {
	if ok {
		return "pass"
	}
	return "fail"
}

// conclusion is the HostReady event that ends the smoke phase: succeeded
// when every check passed; failed otherwise, with reason regression when a
// check that passed in the baseline fails now.
func conclusion(host string, at time.Time, results, baseline []SmokeResult) event.Event {
	before := map[string]bool{}
	for _, b := range baseline {
		before[b.Name] = b.OK
	}
	var failed, regressed []string
	for _, res := range results {
		if res.OK {
			continue
		}
		was, known := before[res.Name]
		note := " (no baseline)"
		switch {
		case known && was:
			note = " (passed before the reboot)"
			regressed = append(regressed, res.Name)
		case known:
			note = " (failed before the reboot too)"
		}
		failed = append(failed, res.Name+": "+res.Message+note)
	}
	ev := event.Event{Time: at, Host: host, Kind: event.HostReady, Stage: event.StageReady, Attrs: map[string]string{"by": "smoke"}}
	if len(failed) == 0 {
		ev.Message = fmt.Sprintf("all %d smoke checks passed", len(results))
		return ev
	}
	ev.Failed = true
	ev.Attrs["reason"] = ReasonSmoke
	ev.Message = fmt.Sprintf("%d of %d smoke checks failed: %s", len(failed), len(results), strings.Join(failed, "; "))
	if len(regressed) > 0 {
		ev.Attrs["reason"] = ReasonRegression
		ev.Attrs["regressions"] = strings.Join(regressed, ",")
		ev.Message = "regression: " + ev.Message
	}
	return ev
}

// restore reloads each host's newest attempt and the pending reboot
// announcements, re-arming their deadlines; deadlines that passed while
// netbootd was down are judged now.
func (t *Tracker) restore(ctx context.Context) error {
	latest, err := t.cfg.Store.LatestBoots(ctx)
	if err != nil {
		return fmt.Errorf("restore boots: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for host, b := range latest {
		r, err := decode(b)
		if err != nil {
			return fmt.Errorf("restore boots: %w", err)
		}
		hs := t.state(host)
		_, cl := t.classOf(host)
		hs.report, hs.hitCount, hs.seen, hs.watch = &r, map[string]int{}, map[string]bool{}, t.watchList(host, cl)
		if !r.Terminal() {
			t.resume(ctx, hs)
		}
	}
	return t.restoreExpectations(ctx)
}

// resume re-arms an in-progress attempt after a restart.
func (t *Tracker) resume(ctx context.Context, hs *hostState) {
	r := hs.report
	t.m.setStage(r.Host, r.LastStage)
	t.log.Info("boot: attempt resumed after restart", zap.String("host", r.Host), zap.Int64("boot", r.BootID),
		zap.Stringer("stage", r.LastStage), zap.Time("deadline", r.Deadline))
	if !r.Deadline.IsZero() && !t.clock.Now().Before(r.Deadline) {
		d := r.deadlineFor(r.LastStage + 1)
		ev := event.Event{Time: r.Deadline, Host: r.Host, Kind: KindStuck, Failed: true,
			Message: stuckMessage(r.LastStage, d) + " (judged when netbootd restarted)",
			Attrs:   map[string]string{"stage": r.LastStage.String(), "deadline": d.String()}}
		if _, err := t.recordLocked(ctx, hs, ev); err != nil {
			t.log.Error("tracker: record stuck on restore", zap.String("host", r.Host), zap.Error(err))
		}
		return
	}
	t.arm(hs)
	if r.LastStage >= event.StageUserspace && r.SmokePlanned > 0 {
		t.startSmoke(hs)
	}
}

func (t *Tracker) restoreExpectations(ctx context.Context) error {
	if t.reports == nil {
		return nil
	}
	xs, err := t.reports.Expectations(ctx)
	if err != nil {
		return fmt.Errorf("restore reboot announcements: %w", err)
	}
	for _, sx := range xs {
		x := &Expectation{ID: sx.ID, Host: sx.Host, Announced: sx.Announced, Deadline: sx.Deadline}
		if err := json.Unmarshal(sx.Baseline, &x.Baseline); err != nil && len(sx.Baseline) > 0 {
			return fmt.Errorf("restore reboot announcement %d: %w", sx.ID, err)
		}
		hs := t.state(x.Host)
		hs.expect = x
		if t.clock.Now().Before(x.Deadline) {
			t.armExpectation(hs, x)
			continue
		}
		ev := event.Event{Time: x.Deadline, Host: x.Host, Kind: KindSkipped, Failed: true,
			Message: fmt.Sprintf("a reboot was announced at %s but no boot attempt started by its deadline %s (judged when netbootd restarted)",
				x.Announced.Format(time.RFC3339), x.Deadline.Format(time.RFC3339))}
		if _, err := t.recordLocked(ctx, hs, ev); err != nil {
			return fmt.Errorf("restore reboot announcement %d: %w", sx.ID, err)
		}
	}
	return nil
}
