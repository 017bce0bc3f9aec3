package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"netboot/internal/api"
	"netboot/internal/boot"
	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/store"
	"netboot/internal/store/sqlite"
)

// The fleet the dashboard must stay fast with (issue 8).
const (
	scaleHosts        = 200
	scaleBootsPerHost = 50 // 10,000 boots
)

type scaleFleet struct {
	inv  *config.Config
	db   *sqlite.DB
	dash *Server
	api  http.Handler
}

// buildFleet stores scaleHosts hosts with scaleBootsPerHost boots each (a
// mix of every outcome, full reports) in a file-backed SQLite store.
func buildFleet(tb testing.TB) *scaleFleet {
	tb.Helper()
	var y strings.Builder
	y.WriteString("server: {address: 127.0.0.1, artifact_root: .}\nclasses:\n  rpi4: {arch: arm64, firmware: rpi}\nhosts:\n")
	for i := range scaleHosts {
		fmt.Fprintf(&y, "  - {name: node%03d, mac: \"dc:a6:32:00:%02x:%02x\", ip: 10.1.%d.%d, class: rpi4}\n", i, i/256, i%256, i/250, i%250+1)
	}
	inv, err := config.Parse("fleet.yaml", tb.TempDir(), []byte(y.String()))
	if err != nil {
		tb.Fatal(err)
	}
	db, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "fleet.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	fill := fixtureReports()
	variants := [][]boot.Report{fill["pi-ok"], fill["pi-fail"], fill["pi-stuck"], fill["pi-regress"], fill["udoo-skip"], fill["pi-boot"]}
	ctx := context.Background()
	for h := range scaleHosts {
		name := fmt.Sprintf("node%03d", h)
		for n := range scaleBootsPerHost {
			v := variants[(h+n)%len(variants)]
			r := v[len(v)-1]
			if n < scaleBootsPerHost-1 && r.Outcome == store.OutcomeInProgress {
				r = v[0] // only the newest boot may still be in progress
			}
			storeScaleBoot(tb, ctx, db, name, r, time.Duration(n)*time.Hour)
		}
	}
	dash, err := New(Config{Inventory: inv, Boots: db, Logs: db, Clock: clock.NewFake(t0.Add(60 * 24 * time.Hour))})
	if err != nil {
		tb.Fatal(err)
	}
	apiSrv := api.New(api.Config{Inventory: inv, Store: db})
	return &scaleFleet{inv: inv, db: db, dash: dash, api: apiSrv}
}

func storeScaleBoot(tb testing.TB, ctx context.Context, db *sqlite.DB, host string, r boot.Report, shift time.Duration) {
	r.Host = host
	r.Started, r.Updated = r.Started.Add(shift), r.Updated.Add(shift)
	if !r.Ended.IsZero() {
		r.Ended = r.Ended.Add(shift)
	}
	stages := make([]boot.StageMark, len(r.Stages))
	for i, m := range r.Stages {
		m.At = m.At.Add(shift)
		stages[i] = m
	}
	r.Stages = stages
	b := store.Boot{Host: host, Started: r.Started, Updated: r.Updated, Ended: r.Ended, Stage: r.LastStage, Outcome: r.Outcome, Reason: r.Reason}
	if err := db.CreateBoot(ctx, &b); err != nil {
		tb.Fatal(err)
	}
	r.BootID, r.Seq = b.ID, b.Seq
	b.State, _ = json.Marshal(r)
	if err := db.UpdateBoot(ctx, &b); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkScale renders the dashboard's pages over 200 hosts and 10,000
// boots, next to the API's JSON host list over the same store (the peer:
// the cheapest way to read the same overview). `make bench` prints both;
// compare their ns/op.
func BenchmarkScale(b *testing.B) {
	f := buildFleet(b)
	pages := []struct{ name, path string }{
		{"api-hosts-json", "/api/v1/hosts"},
		{"dashboard-overview", "/"},
		{"api-hosts-json-again", "/api/v1/hosts"},
		{"dashboard-host-50-boots", "/hosts/node042"},
		{"dashboard-boot", "/boots/5000"},
	}
	for _, p := range pages {
		h := http.Handler(f.dash)
		if strings.HasPrefix(p.path, "/api/") {
			h = f.api
		}
		b.Run(p.name, func(b *testing.B) {
			for b.Loop() {
				if code, _ := get(b, h, p.path); code != 200 {
					b.Fatalf("GET %s: %d", p.path, code)
				}
			}
		})
	}
}

// TestScaleRender builds the 200-host, 10,000-boot fleet, checks that every
// page renders it correctly and logs render times with the API's JSON list
// as the peer measured in the same run (no timed assertion).
func TestScaleRender(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 10,000-boot store")
	}
	f := buildFleet(t)
	code, body := get(t, f.dash, "/")
	if code != 200 {
		t.Fatalf("overview: %d", code)
	}
	if n := strings.Count(body, `<tr class="host `); n != scaleHosts {
		t.Fatalf("overview shows %d hosts, want %d", n, scaleHosts)
	}
	code, body = get(t, f.dash, "/hosts/node042")
	if code != 200 || strings.Count(body, `<li class="boot `) != DefaultHistory {
		t.Fatalf("host page: %d, %d boots", code, strings.Count(body, `<li class="boot `))
	}
	dash := timeRenders(t, f.dash, "/", 20)
	peer := timeRenders(t, f.api, "/api/v1/hosts", 20)
	host := timeRenders(t, f.dash, "/hosts/node042", 20)
	t.Logf("200 hosts, 10,000 boots: overview %.2f ms/render, API JSON host list (peer) %.2f ms, ratio %.2f; host page (50 boots) %.2f ms",
		ms(dash), ms(peer), float64(dash)/float64(peer), ms(host))
}

func timeRenders(t *testing.T, h http.Handler, path string, n int) time.Duration {
	start := time.Now()
	for range n {
		if code, _ := get(t, h, path); code != 200 {
			t.Fatalf("GET %s: %d", path, code)
		}
	}
	return time.Since(start) / time.Duration(n)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
