package dashboard

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"netboot/internal/boot"
	"netboot/internal/event"
	"netboot/internal/store"
)

var update = flag.Bool("update", false, "rewrite golden files")

func get(t testing.TB, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden.html")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s; rerun with -update and review the diff", name, path)
	}
}

func TestPagesGolden(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name, path string
		status     int
	}{
		{"overview", "/", 200},
		{"overview-failed", "/?outcome=failed&sort=name", 200},
		{"host-fail", "/hosts/pi-fail", 200},
		{"host-regress", "/hosts/pi-regress", 200},
		{"host-boot", "/hosts/pi-boot", 200},
		{"host-new", "/hosts/pi-new", 200},
		{"boot-fail", fmt.Sprintf("/boots/%d", f.bootID("pi-fail", -1)), 200},
		{"boot-stuck", fmt.Sprintf("/boots/%d", f.bootID("pi-stuck", -1)), 200},
		{"live", "/hosts/pi-fail/live", 200},
		{"unknown-host", "/hosts/nope", 404},
		{"bad-boot-id", "/boots/x", 400},
		{"missing-boot", "/boots/999999", 404},
		{"bad-filter", "/?outcome=bogus", 400},
		{"overview-refresh", "/?refresh=30", 200},
		{"bad-refresh", "/?refresh=1", 400},
		{"unknown-path", "/nothing/here", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := get(t, f.srv, tt.path)
			if code != tt.status {
				t.Fatalf("GET %s: status %d, want %d\n%s", tt.path, code, tt.status, body)
			}
			golden(t, tt.name, body)
		})
	}
}

func TestOverviewShowsEveryOutcome(t *testing.T) {
	f := newFixture(t)
	_, body := get(t, f.srv, "/")
	want := map[string]string{
		"pi-ok": "succeeded", "pi-fail": "failed", "pi-stuck": "stuck", "pi-regress": "regression",
		"pi-boot": "in-progress", "udoo-skip": "skipped", "pi-new": "none",
	}
	for host, key := range want {
		row := fmt.Sprintf(`data-host="%s" data-outcome="%s"`, host, key)
		if !strings.Contains(body, row) {
			t.Errorf("overview lacks row %s", row)
		}
	}
	// Needs-attention rows come first, in outcome order.
	order := []string{"pi-fail", "pi-regress", "pi-stuck", "udoo-skip", "pi-boot", "pi-ok", "pi-new"}
	last := -1
	for _, host := range order {
		i := strings.Index(body, `data-host="`+host+`"`)
		if i < last {
			t.Errorf("%s is out of order", host)
		}
		last = i
	}
	if !strings.Contains(body, `<code class="signature">rbd-lock-failed</code>`) {
		t.Error("the failed host's signature is not shown")
	}
}

// countingBoots counts the store calls a page makes.
type countingBoots struct {
	BootReader
	calls map[string]int
}

func (c *countingBoots) GetBoot(ctx context.Context, id int64) (store.Boot, error) {
	c.calls["GetBoot"]++
	return c.BootReader.GetBoot(ctx, id)
}

func (c *countingBoots) ListBoots(ctx context.Context, host string, limit int) ([]store.Boot, error) {
	c.calls["ListBoots"]++
	return c.BootReader.ListBoots(ctx, host, limit)
}

func (c *countingBoots) LatestBoots(ctx context.Context) (map[string]store.Boot, error) {
	c.calls["LatestBoots"]++
	return c.BootReader.LatestBoots(ctx)
}

func TestPagesQueryCount(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		path string
		want map[string]int
	}{
		{"/", map[string]int{"LatestBoots": 1}},
		{"/hosts/pi-fail", map[string]int{"ListBoots": 1}},
		{fmt.Sprintf("/boots/%d", f.bootID("pi-fail", -1)), map[string]int{"GetBoot": 1, "ListBoots": 1}},
		{"/hosts/pi-fail/live", map[string]int{"ListBoots": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			c := &countingBoots{BootReader: f.db, calls: map[string]int{}}
			srv, err := New(Config{Inventory: inventory(t), Boots: c, Logs: f.db, Clock: f.clock})
			if err != nil {
				t.Fatal(err)
			}
			if code, body := get(t, srv, tt.path); code != 200 {
				t.Fatalf("status %d: %s", code, body)
			}
			if fmt.Sprint(c.calls) != fmt.Sprint(tt.want) {
				t.Errorf("store calls %v, want %v", c.calls, tt.want)
			}
		})
	}
}

func TestTimelineMatchesReport(t *testing.T) {
	now := t0.Add(time.Hour)
	reports := fixtureReports()
	tests := []struct {
		name     string
		r        boot.Report
		end      string
		ongoing  bool
		failedAt string
	}{
		{"succeeded", reports["pi-ok"][0], "", false, ""},
		{"failed", reports["pi-fail"][1], "failed", false, "root-map"},
		{"stuck", reports["pi-stuck"][0], "stuck", false, "root-map"},
		{"in-progress", reports["pi-boot"][1], "", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := buildTimeline(&tt.r, now)
			if len(tl.Segments) != len(tt.r.Stages) {
				t.Fatalf("%d segments for %d stages", len(tl.Segments), len(tt.r.Stages))
			}
			for i, seg := range tl.Segments {
				m := tt.r.Stages[i]
				if seg.Stage != m.Stage.String() || seg.DurationMS != m.DurationMS {
					t.Errorf("segment %d = %s %d ms, want %s %d ms", i, seg.Stage, seg.DurationMS, m.Stage, m.DurationMS)
				}
			}
			lastSeg := tl.Segments[len(tl.Segments)-1]
			if lastSeg.End != tt.end || lastSeg.Ongoing != tt.ongoing || tl.FailStage != tt.failedAt {
				t.Errorf("last segment end=%q ongoing=%v failStage=%q, want %q %v %q", lastSeg.End, lastSeg.Ongoing, tl.FailStage, tt.end, tt.ongoing, tt.failedAt)
			}
			if tt.ongoing && lastSeg.ElapsedMS != now.Sub(tt.r.Stages[len(tt.r.Stages)-1].At).Milliseconds() {
				t.Errorf("ongoing elapsed %d ms", lastSeg.ElapsedMS)
			}
		})
	}
}

func TestCompareSmoke(t *testing.T) {
	res := func(name string, ok bool) boot.SmokeResult { return boot.SmokeResult{Name: name, OK: ok} }
	tests := []struct {
		name     string
		now      []boot.SmokeResult
		baseline []boot.SmokeResult
		want     string
	}{
		{"all pass", []boot.SmokeResult{res("a", true)}, []boot.SmokeResult{res("a", true)}, "a:ok"},
		{"regression", []boot.SmokeResult{res("a", false)}, []boot.SmokeResult{res("a", true)}, "a:regression"},
		{"still failing", []boot.SmokeResult{res("a", false)}, []boot.SmokeResult{res("a", false)}, "a:still failing"},
		{"fixed", []boot.SmokeResult{res("a", true)}, []boot.SmokeResult{res("a", false)}, "a:fixed"},
		{"no baseline", []boot.SmokeResult{res("a", true), res("b", false)}, nil, "a:new b:failing"},
		{"not run", nil, []boot.SmokeResult{res("a", true)}, "a:not run"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, row := range compareSmoke(&boot.Report{Smoke: tt.now}, tt.baseline) {
				got = append(got, row.Name+":"+row.Verdict)
			}
			if strings.Join(got, " ") != tt.want {
				t.Errorf("got %q, want %q", strings.Join(got, " "), tt.want)
			}
		})
	}
}

func TestOutcomeKeyAndFormat(t *testing.T) {
	keys := []struct{ outcome, reason, want string }{
		{"", "", "none"}, {"failed", "regression", "regression"}, {"failed", "signature", "failed"},
		{"stuck", "deadline", "stuck"}, {"skipped", "no-boot", "skipped"}, {"succeeded", "ready", "succeeded"},
		{"in-progress", "", "in-progress"},
	}
	for _, k := range keys {
		if got := outcomeKey(k.outcome, k.reason); got != k.want {
			t.Errorf("outcomeKey(%q, %q) = %q, want %q", k.outcome, k.reason, got, k.want)
		}
	}
	durs := []struct {
		ms   int64
		want string
	}{{-1, "–"}, {0, "0 ms"}, {850, "850 ms"}, {4200, "4.2 s"}, {187000, "3 m 07 s"}, {3720000, "1 h 02 m"}}
	for _, d := range durs {
		if got := formatMS(d.ms); got != d.want {
			t.Errorf("formatMS(%d) = %q, want %q", d.ms, got, d.want)
		}
	}
}

func TestBootLogMarkersAndSignatures(t *testing.T) {
	f := newFixture(t)
	_, body := get(t, f.srv, fmt.Sprintf("/boots/%d", f.bootID("pi-fail", -1)))
	for _, want := range []string{
		`<li class="marker" data-marker="kernel-up">`,
		`data-signature="rbd-lock-failed"`,
		`<span class="txt">rbd: rbd0: failed to acquire lock: -108</span>`,
		`<tr class="rbd-refused" data-kind="rbd.refused">`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("boot page lacks %s", want)
		}
	}
}

func TestLiveBacklogMarksSignatures(t *testing.T) {
	f := newFixture(t)
	_, body := get(t, f.srv, "/hosts/pi-fail/live")
	for _, want := range []string{`data-signature="rbd-lock-failed"`, `data-signatures="[{&#34;name&#34;:&#34;kernel-panic&#34;`} {
		if !strings.Contains(body, want) {
			t.Errorf("live page lacks %s", want)
		}
	}
}

func TestUnknownSourceIsListed(t *testing.T) {
	f := newFixture(t)
	b := store.Boot{Host: "unknown:127.0.0.9", Started: t0, Updated: t0, Stage: event.StageDHCP, Outcome: store.OutcomeInProgress}
	if err := f.db.CreateBoot(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	_, body := get(t, f.srv, "/")
	if !strings.Contains(body, `<a href="/hosts/unknown:127.0.0.9">unknown:127.0.0.9</a> <span class="muted">(not in inventory)</span>`) {
		t.Error("the unknown source is not listed on the overview")
	}
	if code, body := get(t, f.srv, "/hosts/unknown:127.0.0.9"); code != 200 || !strings.Contains(body, "not in the inventory") {
		t.Errorf("host page of an unknown source: %d", code)
	}
}

func TestStaticAssets(t *testing.T) {
	f := newFixture(t)
	for _, p := range []string{"/static/style.css", "/static/live.js"} {
		if code, body := get(t, f.srv, p); code != 200 || len(body) < 100 {
			t.Errorf("GET %s: %d, %d bytes", p, code, len(body))
		}
	}
}

func TestUnreadableReportShowsColumns(t *testing.T) {
	f := newFixture(t)
	b := store.Boot{Host: "pi-new", Started: t0, Updated: t0, Stage: event.StageKernel, Outcome: store.OutcomeInProgress, State: []byte("{not json")}
	if err := f.db.CreateBoot(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	code, body := get(t, f.srv, fmt.Sprintf("/boots/%d", b.ID))
	if code != 200 || !strings.Contains(body, "<dd>kernel</dd>") {
		t.Errorf("status %d; the boot's own columns are not shown", code)
	}
}

func FuzzParseOverviewQuery(f *testing.F) {
	for _, s := range [][2]string{{"", ""}, {"failed", "name"}, {"regression", "attention"}, {"bogus", ""}, {"none", "x"}, {" stuck ", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, outcome, sortBy string) {
		o, s, err := parseOverviewQuery(outcome, sortBy)
		if err != nil {
			if errorStatus(err) != http.StatusBadRequest {
				t.Fatalf("error %v is not a bad request", err)
			}
			return
		}
		if s != "attention" && s != "name" {
			t.Fatalf("sort %q accepted", s)
		}
		if o != "" && outcomeOrder[o] == 0 && o != store.OutcomeFailed {
			t.Fatalf("outcome %q accepted", o)
		}
	})
}

func FuzzParseRefresh(f *testing.F) {
	for _, s := range []string{"", "0", "5", "30", "3600", "3601", "-1", "x", "1e3", " 30"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		n, err := parseRefresh(v)
		if err != nil {
			if errorStatus(err) != http.StatusBadRequest {
				t.Fatalf("error %v is not a bad request", err)
			}
			return
		}
		if n != 0 && (n < minRefresh || n > maxRefresh) {
			t.Fatalf("refresh %d accepted from %q", n, v)
		}
	})
}

func FuzzDecodeReport(f *testing.F) {
	for _, reps := range fixtureReports() {
		for _, r := range reps {
			state, _ := jsonMarshal(r)
			f.Add(state)
		}
	}
	f.Add([]byte("{"))
	f.Add([]byte(`{"stages":[{"stage":"bogus"}]}`))
	f.Add([]byte(`{"stages":[{"stage":"kernel","duration_ms":-5}],"outcome":"stuck"}`))
	f.Fuzz(func(t *testing.T, state []byte) {
		b := store.Boot{ID: 7, Host: "h", Seq: 1, Outcome: store.OutcomeFailed, State: state}
		r, _ := decodeReport(b)
		if r == nil || r.Host != "h" || r.BootID != 7 {
			t.Fatalf("decodeReport lost the boot's columns: %+v", r)
		}
		it := newBootItem(r, nil, t0)
		if len(it.Timeline.Segments) != len(r.Stages) {
			t.Fatal("timeline does not follow the stages")
		}
	})
}
