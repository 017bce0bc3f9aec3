package dashboard

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"netboot/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the README screenshots in docs/screenshots")

// readmeShots are the screenshots docs/screenshots keeps for the README.
var readmeShots = map[string]bool{"overview": true, "host-pi-regress": true, "boot-failed": true, "live": true}

// browser is a headless Chromium tab bound to a test.
type browser struct {
	t   *testing.T
	ctx context.Context
	dir string // screenshots
}

// newBrowser starts Debian's chromium headless with a fresh profile. Its
// resolver maps every name to nothing, so the browser can only reach the
// test server on 127.0.0.1. The browser is killed when the test ends.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	testenv.RequireTools(t, "chromium")
	path, _ := exec.LookPath("chromium")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first Do starts the browser and binds it to ctx (a context with a
	// timeout here would kill it when the timeout's cancel runs).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &browser{t: t, ctx: ctx, dir: artifactsDir(t)}
}

// artifactsDir is where screenshots are kept: $NETBOOT_ARTIFACTS/dashboard
// (CI keeps it) or the test's temporary directory.
func artifactsDir(t *testing.T) string {
	if d := os.Getenv("NETBOOT_ARTIFACTS"); d != "" {
		dir := filepath.Join(d, "dashboard")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.TempDir()
}

// do runs actions with a bounded time.
func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

// eval evaluates a JavaScript expression and decodes its JSON value into T.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %.60q: %v", expr, err)
	}
	return v
}

// poll waits until expr is truthy, up to 20 s.
func (b *browser) poll(expr string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr)); err != nil {
		b.t.Fatalf("waiting for %s: %v", expr, err)
	}
}

// open navigates to url and waits for the page's main heading.
func (b *browser) open(url string) {
	b.t.Helper()
	b.do(chromedp.Navigate(url), chromedp.WaitVisible("h1"))
}

// screenshot keeps a full-page PNG as a test artifact and, with -update,
// as docs/screenshots/<name>.png for the README.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", path)
	if *update && readmeShots[name] {
		docs := filepath.Join("..", "..", "docs", "screenshots", name+".png")
		if err := os.MkdirAll(filepath.Dir(docs), 0o755); err != nil {
			b.t.Fatal(err)
		}
		if err := os.WriteFile(docs, png, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
}

// fleet is the scenario played once for all browser tests of a run.
func fleet(t *testing.T) (*stack, *browser) {
	s := newStack(t)
	s.play(loadScenario(t))
	s.checkOutcomes()
	if t.Failed() {
		t.FailNow()
	}
	return s, newBrowser(t)
}

// contrastJS lists the text elements whose contrast with their background
// is below WCAG AA (4.5:1), as "selector-ish: ratio".
const contrastJS = `(() => {
	const parse = c => { const m = c.match(/[\d.]+/g) || [0, 0, 0, 0]; return {r: +m[0], g: +m[1], b: +m[2], a: m.length > 3 ? +m[3] : 1}; };
	const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
		return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
	const bg = el => { for (; el; el = el.parentElement) { const c = parse(getComputedStyle(el).backgroundColor); if (c.a > 0.5) return c; } return {r: 255, g: 255, b: 255, a: 1}; };
	const out = [];
	document.querySelectorAll("body *").forEach(el => {
		if (![...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) return;
		const r = el.getBoundingClientRect(); if (r.width < 2 || r.height < 2) return;
		const a = lum(parse(getComputedStyle(el).color)), b = lum(bg(el));
		const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
		if (ratio < 4.5) out.push(el.tagName.toLowerCase() + "." + el.className + " '" + el.textContent.trim().slice(0, 20) + "': " + ratio.toFixed(2));
	});
	return out;
})()`

// checkContrast fails the test for text below WCAG AA contrast.
func (b *browser) checkContrast(page string) {
	b.t.Helper()
	if bad := eval[[]string](b, contrastJS); len(bad) > 0 {
		b.t.Errorf("%s: text below 4.5:1 contrast: %v", page, bad)
	}
}

type hostRowDOM struct {
	Host, Outcome, Stage, State, Badge string
	Attention                          bool
}

func TestBrowserOverview(t *testing.T) {
	s, b := fleet(t)
	b.open(s.url + "/")
	rows := eval[[]hostRowDOM](b, `[...document.querySelectorAll("table.hosts tbody tr.host")].map(tr => ({
		Host: tr.dataset.host, Outcome: tr.dataset.outcome, Attention: tr.classList.contains("attention"),
		Stage: tr.querySelector(".stage").textContent.trim(), State: tr.querySelector(".state").textContent.trim(),
		Badge: tr.querySelector(".badge").textContent.trim()}))`)
	if len(rows) != len(wantOutcomes) {
		t.Fatalf("overview shows %d hosts, want %d: %+v", len(rows), len(wantOutcomes), rows)
	}
	for i, r := range rows {
		if want := wantOutcomes[r.Host]; r.Outcome != want {
			t.Errorf("%s: outcome %q, want %q", r.Host, r.Outcome, want)
		}
		attention := map[string]bool{"failed": true, "stuck": true, "skipped": true, "regression": true}[r.Outcome]
		if r.Attention != attention {
			t.Errorf("%s (%s): attention %v", r.Host, r.Outcome, r.Attention)
		}
		if attention && i > 0 && !rows[i-1].Attention {
			t.Errorf("%s needs attention but is listed after %s", r.Host, rows[i-1].Host)
		}
		if !strings.ContainsAny(r.Badge, "✓✗↯◷⤳…–") || len(strings.Fields(r.Badge)) < 2 {
			t.Errorf("%s: badge %q does not carry a symbol and a word", r.Host, r.Badge)
		}
		if b := s.latestBootOrZero(r.Host); b != "" && r.Stage != b {
			t.Errorf("%s: current stage %q, store says %q", r.Host, r.Stage, b)
		}
	}
	b.checkContrast("overview")
	// The check itself catches low contrast.
	eval[bool](b, `(() => { const s = document.createElement("span"); s.id = "probe"; s.style.color = "#bbbbbb"; s.textContent = "low contrast probe"; document.querySelector("h1").after(s); return true })()`)
	if bad := eval[[]string](b, contrastJS); len(bad) != 1 || !strings.Contains(bad[0], "low contrast probe") {
		t.Errorf("the contrast check found %v, want only the probe", bad)
	}
	eval[bool](b, `(() => { document.getElementById("probe").remove(); return true })()`)
	b.screenshot("overview")
	// Keyboard: the first Tab stop is the skip link, the next the brand link.
	b.do(chromedp.KeyEvent("\t"))
	if got := eval[string](b, `document.activeElement.className`); got != "skip" {
		t.Errorf("first Tab focuses %q, want the skip link", got)
	}
	// Every form control has a label.
	if n := eval[int](b, `[...document.querySelectorAll("select,input")].filter(e => !e.labels || e.labels.length === 0).length`); n != 0 {
		t.Errorf("%d form controls without a label", n)
	}
}

func (s *stack) latestBootOrZero(host string) string {
	if wantOutcomes[host] == "none" {
		return "–"
	}
	b := s.latestBoot(host)
	if b.Stage == 0 {
		return "–"
	}
	return b.Stage.String()
}

// TestBrowserOverviewWithoutJavaScript filters the overview with its form,
// scripts disabled.
func TestBrowserOverviewWithoutJavaScript(t *testing.T) {
	s, b := fleet(t)
	b.do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
		return err
	}))
	b.open(s.url + "/")
	// The click navigates: wait for what only the filtered page has (the
	// summary marks the active filter), not for the old page's rows.
	b.do(chromedp.SetValue("#f-outcome", "stuck"), chromedp.Click(`form.filters button[type=submit]`),
		chromedp.WaitVisible(`li.sum-stuck a[aria-current]`))
	rows := eval[[]string](b, `[...document.querySelectorAll("tr.host")].map(tr => tr.dataset.host)`)
	if len(rows) != 1 || rows[0] != "pi-stuck" {
		t.Errorf("filtered on stuck, rows %v", rows)
	}
	if u := eval[string](b, `location.search`); !strings.Contains(u, "outcome=stuck") {
		t.Errorf("the form did not submit as a GET: %q", u)
	}
}

type segDOM struct {
	Stage    string
	Duration int64
	Width    float64
	End      string
}

type timelineDOM struct {
	BootID   int64
	Segments []segDOM
	FailAt   string
	Sig      string
}

// timelinesJS reads every boot's timeline on a host page.
const timelinesJS = `[...document.querySelectorAll("ol.history li.boot")].map(li => ({
	BootID: Number(li.dataset.bootId),
	Segments: [...li.querySelectorAll("li.seg")].filter(s => s.dataset.stage).map(s => ({Stage: s.dataset.stage,
		Duration: Number(s.dataset.durationMs), Width: s.getBoundingClientRect().width, End: s.dataset.end || ""})),
	FailAt: (li.querySelector(".tl-end") || {dataset: {}}).dataset.failStage || "",
	Sig: (li.querySelector(".tl-end code.signature") || {textContent: ""}).textContent}))`

func TestBrowserHostTimelines(t *testing.T) {
	s, b := fleet(t)
	for _, host := range []string{"pi-fail", "pi-stuck", "pi-regress", "pi-ok", "x86-boot"} {
		b.open(s.url + "/hosts/" + host)
		tls := eval[[]timelineDOM](b, timelinesJS)
		if len(tls) == 0 {
			t.Fatalf("%s: no boot in the history", host)
		}
		for _, tl := range tls {
			s.checkTimeline(t, host, tl)
		}
		b.checkContrast("host " + host)
		b.screenshot("host-" + host)
	}
	b.open(s.url + "/hosts/pi-regress")
	verdicts := eval[map[string]string](b, `Object.fromEntries([...document.querySelectorAll("section.latest table.smoke tbody tr")].map(tr => [tr.dataset.check, tr.dataset.verdict]))`)
	if verdicts["sshd"] != "regression" {
		t.Errorf("pi-regress smoke verdicts %v, want sshd regression", verdicts)
	}
	b.open(s.url + "/hosts/pi-fail")
	rbd := eval[[]string](b, `[...document.querySelectorAll("section.latest table.rbd tbody tr")].map(tr => tr.dataset.kind)`)
	if strings.Join(rbd, ",") != "rbd.prepared,rbd.mapped" {
		t.Errorf("pi-fail RBD actions %v", rbd)
	}
}

// checkTimeline compares a drawn timeline with the stored report: one
// segment per stage, the report's durations, widths in proportion, and the
// failing stage and signature marked.
func (s *stack) checkTimeline(t *testing.T, host string, tl timelineDOM) {
	t.Helper()
	r := s.report(tl.BootID)
	if len(tl.Segments) != len(r.Stages) {
		t.Errorf("%s boot %d: %d segments, report has %d stages", host, tl.BootID, len(tl.Segments), len(r.Stages))
		return
	}
	var total, widths float64
	for i, seg := range tl.Segments {
		m := r.Stages[i]
		if seg.Stage != m.Stage.String() || seg.Duration != m.DurationMS {
			t.Errorf("%s boot %d segment %d: %s %d ms, report %s %d ms", host, tl.BootID, i, seg.Stage, seg.Duration, m.Stage, m.DurationMS)
		}
		total += float64(max(seg.Duration, 1))
		widths += seg.Width
	}
	if r.Outcome != "in-progress" {
		for i, seg := range tl.Segments {
			share, drawn := float64(max(seg.Duration, 1))/total, seg.Width/widths
			if share > 0.1 && math.Abs(share-drawn) > 0.03 {
				t.Errorf("%s boot %d segment %d (%s): %.1f%% of the bar for %.1f%% of the time", host, tl.BootID, i, seg.Stage, 100*drawn, 100*share)
			}
		}
	}
	switch r.Outcome {
	case "failed", "stuck":
		last := tl.Segments[len(tl.Segments)-1]
		if last.End != r.Outcome {
			t.Errorf("%s boot %d: last segment end %q, want %q", host, tl.BootID, last.End, r.Outcome)
		}
		if r.Failure != nil && (tl.FailAt != r.Failure.Stage.String() || tl.Sig != r.Failure.Signature) {
			t.Errorf("%s boot %d: marked %q/%q, report failure %s/%q", host, tl.BootID, tl.FailAt, tl.Sig, r.Failure.Stage, r.Failure.Signature)
		}
	}
}

type logRowDOM struct {
	Marker, Sig, Text string
}

func TestBrowserBootPage(t *testing.T) {
	s, b := fleet(t)
	boot := s.latestBoot("pi-fail")
	b.open(fmt.Sprintf("%s/boots/%d", s.url, boot.ID))
	if got := eval[string](b, `document.querySelector("h1 .badge").dataset.outcome`); got != "failed" {
		t.Errorf("boot page outcome %q", got)
	}
	if got := eval[string](b, `document.querySelector(".failure code.signature").textContent`); got != "vfs-no-root" {
		t.Errorf("failure signature %q, want vfs-no-root", got)
	}
	rows := eval[[]logRowDOM](b, `[...document.querySelectorAll("ol.log li")].map(li => ({Marker: li.dataset.marker || "",
		Sig: li.dataset.signature || "", Text: (li.querySelector(".txt") || li).textContent}))`)
	var markers []string
	sig := ""
	for _, r := range rows {
		if r.Marker != "" {
			markers = append(markers, r.Marker)
		}
		if r.Sig != "" {
			sig = r.Sig + ": " + r.Text
		}
	}
	r := s.report(boot.ID)
	if len(markers) != len(r.Stages) {
		t.Errorf("log has %d stage markers %v, report %d stages", len(markers), markers, len(r.Stages))
	}
	if !strings.HasPrefix(sig, "vfs-no-root: VFS: Cannot open root device") {
		t.Errorf("signature line highlighted: %q", sig)
	}
	b.checkContrast("boot page")
	b.screenshot("boot-failed")
	stuck := s.latestBoot("pi-stuck")
	b.open(fmt.Sprintf("%s/boots/%d", s.url, stuck.ID))
	if got := eval[string](b, `document.querySelector(".tl-end").dataset.failStage`); got != "root-prepare" {
		t.Errorf("stuck boot marked at %q", got)
	}
	b.screenshot("boot-stuck")
}

func TestBrowserLiveLog(t *testing.T) {
	s, b := fleet(t)
	b.open(s.url + "/hosts/pi-live/live")
	b.poll(`document.getElementById("live-status").dataset.state === "live"`)
	if n := eval[int](b, `document.querySelectorAll("#live-log li").length`); n < 2 {
		t.Errorf("backlog shows %d lines, want the boot's first 2", n)
	}
	lines := []string{
		"bcm2835-wdt bcm2835-wdt: Broadcom BCM2835 watchdog timer",
		"genet: eth0 link up 1Gbps full duplex",
		"nbinit: network: lease 127.0.1.17/8 via udhcpc",
		"rbd: rbd0: capacity 10737418240 features 0x3d",
		"EXT4-fs (rbd0): mounted filesystem with ordered data mode",
	}
	for _, l := range lines {
		s.send("pi-live", l)
	}
	b.poll(fmt.Sprintf(`[...document.querySelectorAll("#live-log li.new .txt")].some(e => e.textContent === %q)`, lines[len(lines)-1]))
	got := eval[[]string](b, `[...document.querySelectorAll("#live-log li.new .txt")].map(e => e.textContent)`)
	if strings.Join(got, "\n") != strings.Join(lines, "\n") {
		t.Errorf("live lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(lines, "\n"))
	}
	// Filter by text: only matching lines stay visible.
	b.do(chromedp.SendKeys("#f-grep", "rbd0"))
	b.poll(`[...document.querySelectorAll("#live-log li")].filter(li => !li.hidden).length === 2`)
	// A line arriving while filtered is hidden unless it matches.
	s.send("pi-live", "systemd[1]: Reached target multi-user.target")
	s.send("pi-live", "rbd: rbd0: watch re-established")
	b.poll(`[...document.querySelectorAll("#live-log li.new .txt")].some(e => e.textContent === "rbd: rbd0: watch re-established")`)
	visible := eval[[]string](b, `[...document.querySelectorAll("#live-log li")].filter(li => !li.hidden).map(li => li.querySelector(".txt").textContent)`)
	for _, v := range visible {
		if !strings.Contains(v, "rbd0") {
			t.Errorf("line %q visible under filter rbd0", v)
		}
	}
	if len(visible) != 3 {
		t.Errorf("%d lines visible under filter rbd0, want 3: %v", len(visible), visible)
	}
	eval[bool](b, `(() => { const g = document.getElementById("f-grep"); g.value = ""; g.dispatchEvent(new Event("input")); return true })()`)
	// A line matching a failure signature is marked as it arrives.
	sigLine := "rbd: rbd0: failed to acquire lock: -108"
	s.send("pi-live", sigLine)
	b.poll(fmt.Sprintf(`[...document.querySelectorAll("#live-log li.new")].some(li => li.querySelector(".txt").textContent === %q)`, sigLine))
	if got := eval[string](b, `[...document.querySelectorAll("#live-log li.new")].pop().dataset.signature || ""`); got != "rbd-lock-failed" {
		t.Errorf("signature line marked %q, want rbd-lock-failed", got)
	}
	b.poll(`[...document.querySelectorAll("#live-log li")].every(li => !li.hidden)`)
	b.checkContrast("live view")
	b.screenshot("live")
}
