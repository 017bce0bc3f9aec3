package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"netboot/internal/boot"
	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/event"
	"netboot/internal/store/sqlite"
	"netboot/rbd"
	"netboot/rbd/rbdtest"
)

type rbdFixture struct {
	ts      *httptest.Server
	tr      *boot.Tracker
	db      *sqlite.DB
	cluster *rbdtest.Cluster
}

// rbdTestServer serves h1 (127.0.0.1, the test's own address) and h2
// (10.9.9.9) with root images, over an in-memory cluster in which h1's
// image is locked by prevAddr.
func rbdTestServer(t *testing.T, prevAddr string) *rbdFixture {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	inv := &config.Config{
		Server:  config.Server{APIToken: "tok"},
		Ceph:    config.Ceph{Monitors: []string{"10.0.0.1:6789"}, Timeout: config.Duration(time.Second)},
		Classes: map[string]config.Class{"plain": {Arch: "amd64"}},
		Hosts: []config.Host{
			{Name: "h1", MAC: "02:00:00:00:00:01", IP: "127.0.0.1", Class: "plain", Arch: "amd64"},
			{Name: "h2", MAC: "02:00:00:00:00:02", IP: "10.9.9.9", Class: "plain", Arch: "amd64"},
		},
	}
	inv.Hosts[0].RBD.Pool, inv.Hosts[0].RBD.Image = "rbd", "h1-root"
	inv.Hosts[1].RBD.Pool, inv.Hosts[1].RBD.Image = "rbd", "h2-root"
	clk := clock.NewFake(time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC))
	tr, err := boot.New(ctx, boot.Config{Inventory: inv, Store: db, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	var obs rbd.Observation
	if prevAddr != "" {
		a := rbd.MustParseAddr(prevAddr)
		obs.Owners = []rbd.LockOwner{{Addr: a, Exclusive: true}}
		obs.Lockers = rbd.Lockers{Tag: "internal", Lockers: []rbd.Locker{{Client: "client.4130", Cookie: "auto 1", Addr: a}}}
	}
	fc := rbdtest.New(obs)
	log := zaptest.NewLogger(t)
	ex := rbd.NewExecutor(fc, rbd.ExecutorConfig{CallTimeout: time.Second}, log, clock.Real{}, nil)
	svc := rbd.NewService(rbd.ServiceConfig{Inventory: inv, Cluster: fc, Executor: ex, Clients: db, Events: db, Boots: tr, Log: log, Clock: clk})
	ts := httptest.NewServer(New(Config{Inventory: inv, Store: db, Deps: Deps{Boots: tr, Root: svc}, Clock: clk, Log: log}))
	t.Cleanup(ts.Close)
	return &rbdFixture{ts: ts, tr: tr, db: db, cluster: fc}
}

func (f *rbdFixture) boot(t *testing.T, host string) {
	t.Helper()
	if _, err := f.tr.Record(context.Background(), event.Event{Host: host, Kind: event.DHCPRequest, Stage: event.StageDHCP,
		Attrs: map[string]string{"client": "ipxe"}}); err != nil {
		t.Fatal(err)
	}
}

func (f *rbdFixture) events(t *testing.T, host string, kind event.Kind) []event.Event {
	t.Helper()
	evs, err := f.db.HostEvents(context.Background(), host, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []event.Event
	for _, e := range evs {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func TestRootPrepareRules(t *testing.T) {
	tests := []struct {
		name    string
		host    string
		booting bool
		token   string
		status  int
		reason  string
	}{
		{name: "not booting", host: "h1", status: http.StatusConflict, reason: "not-booting"},
		{name: "not booting, even with the api token", host: "h1", token: "tok", status: http.StatusConflict, reason: "not-booting"},
		{name: "other host's address", host: "h2", booting: true, status: http.StatusForbidden, reason: "wrong-caller"},
		{name: "unknown host", host: "nope", booting: false, status: http.StatusNotFound},
		{name: "unrecorded owner", host: "h1", booting: true, status: http.StatusConflict, reason: "unrecorded-owner"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := rbdTestServer(t, "127.0.0.1:0/4242")
			if tt.booting {
				f.boot(t, tt.host)
			}
			code, body := call(t, "POST", f.ts.URL+"/api/v1/hosts/"+tt.host+"/root/prepare", tt.token, "")
			if code != tt.status || !strings.Contains(body, tt.reason) {
				t.Fatalf("status %d body %s; want %d with %q", code, body, tt.status, tt.reason)
			}
			if f.cluster.Breaks != 0 {
				t.Fatalf("lock broken on a refused prepare")
			}
		})
	}
}

// TestRootPrepareMappedCycle: a boot prepares (nothing to do), maps and
// reports its client; the host crashes; the next boot's prepare hands the
// recorded client's lock over and gets the host's own key.
func TestRootPrepareMappedCycle(t *testing.T) {
	f := rbdTestServer(t, "")
	f.boot(t, "h1")
	code, body := call(t, "POST", f.ts.URL+"/api/v1/hosts/h1/root/prepare", "", "")
	if code != http.StatusOK {
		t.Fatalf("first prepare: %d %s", code, body)
	}
	var ans rbd.PrepareAnswer
	if err := json.Unmarshal([]byte(body), &ans); err != nil {
		t.Fatal(err)
	}
	if ans.Map.User != "netboot-h1" || ans.Map.Key != "key" || ans.Map.Image != "h1-root" || len(ans.Map.Monitors) != 1 {
		t.Fatalf("map info %+v", ans.Map)
	}
	for _, bad := range []string{`{"client_addr":"10.9.9.9:0/1","client_id":"client1"}`, `{"client_addr":"junk"}`, `{"client_addr":"127.0.0.1:0/1","client_id":"x"}`} {
		if code, body := call(t, "POST", f.ts.URL+"/api/v1/hosts/h1/root/mapped", "", bad); code != http.StatusBadRequest {
			t.Errorf("mapped %s: %d %s, want 400", bad, code, body)
		}
	}
	if code, body := call(t, "POST", f.ts.URL+"/api/v1/hosts/h2/root/mapped", "tok", `{"client_addr":"10.9.9.9:0/1"}`); code != http.StatusForbidden {
		t.Errorf("mapped for h2 from h1's address: %d %s, want 403", code, body)
	}
	rep := `{"client_addr":"127.0.0.1:0/3800830946","client_id":"client4130","device":"rbd0"}`
	if code, body := call(t, "POST", f.ts.URL+"/api/v1/hosts/h1/root/mapped", "", rep); code != http.StatusOK {
		t.Fatalf("mapped: %d %s", code, body)
	}
	// The host crashes; its client's lock stays.
	a := rbd.MustParseAddr("127.0.0.1:0/3800830946")
	f.cluster.Obs.Owners = []rbd.LockOwner{{Addr: a, Exclusive: true}}
	f.cluster.Obs.Lockers = rbd.Lockers{Tag: "internal", Lockers: []rbd.Locker{{Client: "client.4130", Cookie: "auto 1", Addr: a}}}

	code, body = call(t, "GET", f.ts.URL+"/api/v1/hosts/h1/rbd/plan", "", "")
	if code != http.StatusOK || !strings.Contains(body, `"kind": "break-lock"`) || f.cluster.Breaks != 0 {
		t.Fatalf("plan: %d %s (breaks %d)", code, body, f.cluster.Breaks)
	}
	f.boot(t, "h1") // the next boot (DHCP again)
	code, body = call(t, "POST", f.ts.URL+"/api/v1/hosts/h1/root/prepare", "", "")
	if code != http.StatusOK || f.cluster.Breaks != 1 {
		t.Fatalf("second prepare: %d %s (breaks %d)", code, body, f.cluster.Breaks)
	}
	code, body = call(t, "GET", f.ts.URL+"/api/v1/hosts/h1/rbd", "", "")
	if code != http.StatusOK || !strings.Contains(body, "3800830946") || !strings.Contains(body, `"kind": "rbd.prepared"`) {
		t.Fatalf("status: %d %s", code, body)
	}
	prepared := f.events(t, "h1", event.RootPrepared)
	if len(prepared) != 2 || !strings.Contains(prepared[1].Attr("step2"), "break-lock 127.0.0.1:0/3800830946: ok") {
		t.Fatalf("prepared events %+v", prepared)
	}
	if mapped := f.events(t, "h1", event.RootMapped); len(mapped) != 1 || mapped[0].Attr("client_id") != "client4130" {
		t.Fatalf("mapped events %+v", mapped)
	}
}

func TestRootPrepareCephDown(t *testing.T) {
	f := rbdTestServer(t, "")
	f.boot(t, "h1")
	f.cluster.Set("owners", fmt.Errorf("owners: %w", rbd.ErrUnavailable))
	resp, err := http.Post(f.ts.URL+"/api/v1/hosts/h1/root/prepare", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	evs := f.events(t, "h1", event.RootRefused)
	if len(evs) != 1 || evs[0].Failed || evs[0].Attr("retryable") != "true" {
		t.Fatalf("refused events %+v", evs)
	}
}

func TestRootPrepareImageMissing(t *testing.T) {
	f := rbdTestServer(t, "")
	f.boot(t, "h1")
	f.cluster.Set("owners", fmt.Errorf("list lockers: %w", rbd.ErrNotFound))
	code, body := call(t, "POST", f.ts.URL+"/api/v1/hosts/h1/root/prepare", "", "")
	if code != http.StatusConflict || !strings.Contains(body, "image-missing") {
		t.Fatalf("status %d %s, want 409 image-missing", code, body)
	}
	if evs := f.events(t, "h1", event.RootRefused); len(evs) != 1 || !evs[0].Failed {
		t.Fatalf("refused events %+v", evs)
	}
}
