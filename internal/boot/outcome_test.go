package boot

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/event"
	"netboot/internal/store"
)

// tcpPeer is a real TCP service that a smoke check connects to; Stop
// closes it (the service "did not come back").
type tcpPeer struct {
	ln   net.Listener
	addr string
}

func newTCPPeer(t *testing.T) *tcpPeer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpPeer{ln: ln, addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(p.Stop)
	return p
}

func (p *tcpPeer) Stop() { p.ln.Close() }

// smokeInventory has class "svc" whose two smoke checks are tcp connects to
// the peers (via host variables).
func smokeInventory(a, b string, hooks ...config.Webhook) *config.Config {
	inv := testInventory()
	inv.Classes["svc"] = config.Class{Arch: "amd64", Smoke: []config.SmokeCheck{
		{Name: "osd-port", Kind: "tcp", Target: "{{.osd_addr}}", Deadline: config.Duration(2 * time.Second)},
		{Name: "api-port", Kind: "tcp", Target: "{{.api_addr}}", Deadline: config.Duration(2 * time.Second)},
	}}
	inv.Hosts = append(inv.Hosts, config.Host{Name: "stor1", MAC: "02:00:00:00:00:31", IP: "10.0.0.31", Class: "svc", Arch: "amd64",
		Variables: map[string]string{"osd_addr": a, "api_addr": b}})
	inv.Webhooks = hooks
	return inv
}

var storBoot = chain(firmwareDHCP, fwFetch, ipxeDHCP, kernelFetch, initrdFetch, kernelUp, nbInit, nbNetwork, rootPrepared, rootMapped,
	rootMount, switchRoot, userspace)

// TestSameWayItWentDown announces a reboot (baseline), reboots, and checks
// the outcome: succeeded when every check passes, failed with reason
// regression when a check that passed before fails now, failed with reason
// smoke when it failed before too.
func TestSameWayItWentDown(t *testing.T) {
	cases := []struct {
		name            string
		downBefore      bool // api peer already down before the announcement
		downAfter       bool // api peer stopped during the reboot
		wantOutcome     string
		wantReason      string
		wantRegressions []string
	}{
		{"all-pass", false, false, store.OutcomeSucceeded, ReasonReady, nil},
		{"regression", false, true, store.OutcomeFailed, ReasonRegression, []string{"api-port"}},
		{"failed-before-too", true, true, store.OutcomeFailed, ReasonSmoke, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			osd, api := newTCPPeer(t), newTCPPeer(t)
			if tc.downBefore {
				api.Stop()
			}
			clk := clock.NewFake(t0)
			tr := newTestTracker(t, smokeInventory(osd.addr, api.addr), memStore(t), clk)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			x, err := tr.ExpectReboot(ctx, "stor1", 10*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if len(x.Baseline) != 2 || x.Baseline[1].OK == tc.downBefore {
				t.Fatalf("baseline = %+v", x.Baseline)
			}
			since := clk.Now()
			if tc.downAfter {
				api.Stop()
			}
			feed(t, tr, clk, "stor1", storBoot)
			r, err := tr.Wait(ctx, "stor1", since)
			if err != nil {
				t.Fatalf("wait: %v (report %+v)", err, r)
			}
			if r.Outcome != tc.wantOutcome || r.Reason != tc.wantReason || !slices.Equal(r.Regressions, tc.wantRegressions) {
				t.Errorf("outcome %s reason %s regressions %v (%s); want %s %s %v", r.Outcome, r.Reason, r.Regressions, r.Message,
					tc.wantOutcome, tc.wantReason, tc.wantRegressions)
			}
			if r.Expected == nil || len(r.Expected.Baseline) != 2 || len(r.Smoke) != 2 {
				t.Errorf("report lacks the baseline or the smoke results: expected=%+v smoke=%+v", r.Expected, r.Smoke)
			}
		})
	}
}

// TestSkippedAndStuckAreNeverSilent checks that an announced reboot that
// never starts and a boot that stalls both end with an outcome, a metric
// and a webhook.
func TestSkippedAndStuckAreNeverSilent(t *testing.T) {
	var mu sync.Mutex
	var got []WebhookPayload
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p WebhookPayload
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		mu.Lock()
		got = append(got, p)
		mu.Unlock()
	}))
	defer recv.Close()
	inv := testInventory()
	inv.Webhooks = []config.Webhook{{URL: recv.URL, Events: []string{"failed", "stuck", "skipped", "regression"}}}
	clk := clock.NewFake(t0)
	reg := prometheus.NewPedanticRegistry()
	tr, err := New(context.Background(), Config{Inventory: inv, Store: memStore(t), Clock: clk, Metrics: reg, WebhookBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := tr.ExpectReboot(ctx, "pi1", time.Minute); err != nil {
		t.Fatal(err)
	}
	feed(t, tr, clk, "udoo1", chain(firmwareDHCP, fwFetch))
	clk.Advance(2 * time.Minute)
	tr.Close()
	pi, _ := tr.Latest(ctx, "pi1", time.Time{})
	udoo, _ := tr.Latest(ctx, "udoo1", time.Time{})
	if pi.Outcome != store.OutcomeSkipped || udoo.Outcome != store.OutcomeStuck || udoo.LastStage != event.StageFirmware {
		t.Errorf("pi1 %s, udoo1 %s at %s; want skipped and stuck at firmware", pi.Outcome, udoo.Outcome, udoo.LastStage)
	}
	var events []string
	for _, p := range got {
		events = append(events, p.Event+":"+p.Host)
	}
	slices.Sort(events)
	if !slices.Equal(events, []string{"skipped:pi1", "stuck:udoo1"}) {
		t.Errorf("webhooks = %v", events)
	}
	if n := testutil.ToFloat64(tr.m.skipped.WithLabelValues("pi1")); n != 1 {
		t.Errorf("skipped metric = %v", n)
	}
	if n := testutil.ToFloat64(tr.m.stuck.WithLabelValues("udoo1", "firmware")); n != 1 {
		t.Errorf("stuck metric = %v", n)
	}
}

// TestWebhookRetriesAfterFailedDelivery: the receiver fails the first
// delivery; the second carries the same payload, signed; a receiver that
// never answers 2xx leaves a failed delivery record.
func TestWebhookRetriesAfterFailedDelivery(t *testing.T) {
	var mu sync.Mutex
	var bodies [][]byte
	var sigs []string
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		bodies = append(bodies, body)
		sigs = append(sigs, r.Header.Get("X-Netboot-Signature"))
		if len(bodies) == 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}
	}))
	defer flaky.Close()
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nope", http.StatusInternalServerError)
	}))
	defer dead.Close()
	inv := testInventory()
	inv.Webhooks = []config.Webhook{
		{URL: flaky.URL, Events: []string{"failed"}, Secret: "s3cret"},
		{URL: dead.URL, Events: []string{"failed"}},
	}
	st := memStore(t)
	clk := clock.NewFake(t0)
	tr, err := New(context.Background(), Config{Inventory: inv, Store: st, Clock: clk, WebhookAttempts: 3, WebhookBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	feed(t, tr, clk, "udoo1", append(append([]step{}, x86ToRootMap...), failed(event.StageReport, event.StageRootMount, "mount: invalid argument")))
	tr.Close()
	if len(bodies) != 2 || string(bodies[0]) != string(bodies[1]) {
		t.Fatalf("flaky receiver got %d deliveries, want the same payload twice", len(bodies))
	}
	mac := hmac.New(sha256.New, []byte("s3cret"))
	mac.Write(bodies[1])
	if sigs[1] != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
		t.Errorf("signature header %q does not match the body", sigs[1])
	}
	var p WebhookPayload
	if err := json.Unmarshal(bodies[1], &p); err != nil {
		t.Fatal(err)
	}
	if p.Event != "failed" || p.Host != "udoo1" || p.Report.Failure == nil || p.Report.Failure.Stage != event.StageRootMount ||
		!strings.Contains(p.Summary, "mount: invalid argument") {
		t.Errorf("payload = %+v", p)
	}
	deliveries, err := st.(store.Reports).Deliveries(context.Background(), true, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(deliveries) != 1 || deliveries[0].URL != dead.URL || deliveries[0].Attempts != 3 || !strings.Contains(deliveries[0].Error, "500") {
		t.Errorf("failed deliveries = %+v, want one for the dead receiver after 3 attempts", deliveries)
	}
}

// TestMetricNamesPassPromlint lints every series the tracker exports.
func TestMetricNamesPassPromlint(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	clk := clock.NewFake(t0)
	tr, err := New(context.Background(), Config{Inventory: testInventory(), Store: memStore(t), Clock: clk, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	feed(t, tr, clk, "udoo1", append(append([]step{}, x86ToRootMap...), rootMount, switchRoot, userspace))
	tr.m.stuck.WithLabelValues("x", "dhcp")
	tr.m.skipped.WithLabelValues("x")
	tr.m.regressions.WithLabelValues("x", "c")
	tr.m.smoke.WithLabelValues("c", "n", "pass")
	tr.m.signatures.WithLabelValues("oom")
	tr.m.dropped.WithLabelValues("queue-full-line")
	tr.m.webhooks.WithLabelValues("ok")
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) != len(tr.m.collectors()) {
		t.Errorf("gathered %d families, want %d", len(families), len(tr.m.collectors()))
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	if v := testutil.ToFloat64(tr.m.boots.WithLabelValues("udoo1", "udoo", "succeeded")); v != 1 {
		t.Errorf("netboot_boots_total{udoo1,succeeded} = %v", v)
	}
	if v := testutil.ToFloat64(tr.m.stage.WithLabelValues("udoo1", "ready", "13")); v != 1 {
		t.Errorf("netboot_boot_stage{udoo1,ready} = %v", v)
	}
}

// TestEmitIsQueuedAndOrdered uses the Sink path the other parts use.
func TestEmitIsQueuedAndOrdered(t *testing.T) {
	clk := clock.NewFake(t0)
	tr := newTestTracker(t, testInventory(), memStore(t), clk)
	var sink event.Sink = tr
	for _, s := range x86ToRootMap {
		e := s.ev
		e.Host = "udoo1"
		sink.Emit(e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for tr.InProgress("udoo1") == false || lastStage(tr, "udoo1") != event.StageRootMap {
		select {
		case <-ctx.Done():
			t.Fatalf("queued events not recorded: stage %s", lastStage(tr, "udoo1"))
		case <-tr.changes():
		case <-time.After(10 * time.Millisecond):
		}
	}
	id, ok := tr.Current("udoo1")
	evs, err := tr.cfg.Store.BootEvents(ctx, id)
	if !ok || err != nil || len(evs) != len(x86ToRootMap) {
		t.Errorf("boot %d has %d events (%v), want %d", id, len(evs), err, len(x86ToRootMap))
	}
}

func lastStage(tr *Tracker, host string) event.Stage {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if hs, ok := tr.hosts[host]; ok && hs.report != nil {
		return hs.report.LastStage
	}
	return event.StageNone
}

// TestWebhookPayloadGolden pins the documented payload (docs/webhooks.md).
func TestWebhookPayloadGolden(t *testing.T) {
	clk := clock.NewFake(t0)
	tr := newTestTracker(t, testInventory(), memStore(t), clk)
	steps := append(append([]step{}, x86ToRootMap...),
		line("[   12.000000] rbd: rbd0: failed to acquire exclusive lock: -108"),
		line("[   12.100000] nbinit: map rbd/udoo1-root: permission denied"),
		wait(50*time.Second))
	for _, s := range steps {
		clk.Advance(s.after)
		switch {
		case s.line != "":
			tr.observe("udoo1", 0, clk.Now(), s.line)
		case s.ev.Kind != "":
			e := s.ev
			e.Host, e.Time = "udoo1", clk.Now()
			if _, err := tr.Record(context.Background(), e); err != nil {
				t.Fatal(err)
			}
		}
	}
	r, err := tr.Latest(context.Background(), "udoo1", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "testdata/webhook-stuck.json", newPayload(r, clk.Now()))
}

// TestNetconsoleSmokeCheckSeesThisBootsLines: a netconsole smoke check
// passes on a line observed in this boot (even before userspace), and fails
// when the line only appeared in the previous boot.
func TestNetconsoleSmokeCheckSeesThisBootsLines(t *testing.T) {
	inv := testInventory()
	inv.Classes["nc"] = config.Class{Arch: "amd64", Smoke: []config.SmokeCheck{{Name: "multi-user", Kind: "netconsole",
		Target: `Reached target Multi-User System`, Deadline: config.Duration(300 * time.Millisecond)}}}
	inv.Hosts = append(inv.Hosts, config.Host{Name: "nc1", MAC: "02:00:00:00:00:41", Class: "nc", Arch: "amd64"})
	clk := clock.NewFake(t0)
	tr := newTestTracker(t, inv, memStore(t), clk)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	feed(t, tr, clk, "nc1", chain(firmwareDHCP, kernelUp, nbInit))
	tr.observe("nc1", 0, clk.Now(), "[   9.000000] systemd[1]: Reached target Multi-User System.")
	feed(t, tr, clk, "nc1", chain(switchRoot, userspace))
	first, err := tr.Wait(ctx, "nc1", t0)
	if err != nil || first.Outcome != store.OutcomeSucceeded {
		t.Fatalf("boot with the line: %s (%s) %v", first.Outcome, first.Message, err)
	}
	since := clk.Now()
	feed(t, tr, clk, "nc1", chain(firmwareDHCP, kernelUp, nbInit, switchRoot, userspace))
	second, err := tr.Wait(ctx, "nc1", since)
	if err != nil || second.Outcome != store.OutcomeFailed || second.BootID == first.BootID ||
		!strings.Contains(second.Message, "no line of this boot matched") {
		t.Errorf("boot without the line: %s (%s) %v", second.Outcome, second.Message, err)
	}
}

// TestSubscribeSeesReportChanges: a subscriber gets each change of a
// report, ending with its outcome.
func TestSubscribeSeesReportChanges(t *testing.T) {
	clk := clock.NewFake(t0)
	tr := newTestTracker(t, testInventory(), memStore(t), clk)
	ch, cancel := tr.Subscribe(64)
	defer cancel()
	feed(t, tr, clk, "pi1", chain(rpiDHCP, nbInit, userspace))
	var stages []string
	var last Report
	for len(ch) > 0 {
		last = <-ch
		stages = append(stages, last.LastStage.String())
	}
	if last.Outcome != store.OutcomeSucceeded || !slices.Equal(stages, []string{"dhcp", "init", "ready"}) {
		t.Errorf("changes seen: %v, last outcome %s", stages, last.Outcome)
	}
}
