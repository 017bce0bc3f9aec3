package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"netboot/internal/boot"
	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/store/sqlite"
)

func bootTestServer(t *testing.T) (*httptest.Server, *boot.Tracker, *clock.Fake) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	inv := &config.Config{
		Server:  config.Server{APIToken: "tok"},
		Classes: map[string]config.Class{"plain": {Arch: "amd64"}},
		Hosts: []config.Host{
			{Name: "h1", MAC: "02:00:00:00:00:01", IP: "127.0.0.1", Class: "plain", Arch: "amd64"},
			{Name: "h2", MAC: "02:00:00:00:00:02", IP: "10.9.9.9", Class: "plain", Arch: "amd64"},
		},
	}
	clk := clock.NewFake(time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC))
	tr, err := boot.New(ctx, boot.Config{Inventory: inv, Store: db, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	ts := httptest.NewServer(New(Config{Inventory: inv, Store: db, Deps: Deps{Boots: tr}, Clock: clk}))
	t.Cleanup(ts.Close)
	return ts, tr, clk
}

func call(t *testing.T, method, u, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestBootRoutes walks nbinit's stage posts (bound to the host's address),
// the report routes, the token-guarded reboot announcement and bad input.
func TestBootRoutes(t *testing.T) {
	ts, _, clk := bootTestServer(t)
	since := url.QueryEscape(clk.Now().Format(time.RFC3339))
	steps := []struct {
		method, path, token, body string
		wantStatus                int
		wantBody                  string
	}{
		{"GET", "/api/v1/hosts/h1/boots/latest", "", "", 404, "no such boot"},
		{"POST", "/api/v1/hosts/h1/stages", "", `{"stage":"init","ok":true}`, 200, `"boot_id": 1`},
		{"POST", "/api/v1/hosts/h1/stages", "", `{"stage":"network","ok":false,"message":"no lease","attrs":{"retry_in":"1s"}}`, 200, `"boot_id": 1`},
		{"POST", "/api/v1/hosts/h1/stages", "", `{"stage":"network","ok":true}`, 200, `"boot_id": 1`},
		{"POST", "/api/v1/hosts/h2/stages", "", `{"stage":"init","ok":true}`, 403, "only answers the host itself"},
		{"POST", "/api/v1/hosts/h1/stages", "", `{"stage":"warp","ok":true}`, 400, "unknown stage"},
		{"POST", "/api/v1/hosts/h1/stages", "", `{"stage":"init","bogus":1}`, 400, "bad request body"},
		{"POST", "/api/v1/hosts/nope/stages", "", `{"stage":"init","ok":true}`, 404, "unknown host"},
		{"GET", "/api/v1/hosts/h1/boots/latest?since=" + since, "", "", 200, `"outcome": "in-progress"`},
		{"GET", "/api/v1/hosts/h1/boots/latest?since=" + since + "&wait=50ms", "", "", 200, `"last_stage": "network"`},
		{"POST", "/api/v1/hosts/h1/stages", "", `{"stage":"userspace","ok":true}`, 200, `"boot_id": 1`},
		{"GET", "/api/v1/hosts/h1/boots/latest?wait=10s", "", "", 200, `"outcome": "succeeded"`},
		{"GET", "/api/v1/hosts/h1/boots/1?wait=10s", "", "", 200, `"outcome": "succeeded"`},
		{"GET", "/api/v1/hosts/h2/boots/1", "", "", 404, "is not h2's"},
		{"GET", "/api/v1/hosts/h1/boots", "", "", 200, `"boot_id": 1`},
		{"GET", "/api/v1/hosts/h1/boots/latest?since=yesterday", "", "", 400, "not an RFC 3339 time"},
		{"GET", "/api/v1/hosts/h1/boots/latest?wait=-1s", "", "", 400, "not a positive duration"},
		{"GET", "/api/v1/hosts/h1/boots/x", "", "", 400, "bad boot id"},
		{"POST", "/api/v1/hosts/h1/reboots", "", `{}`, 401, "bearer token"},
		{"POST", "/api/v1/hosts/h1/reboots", "tok", `{"deadline":"soon"}`, 400, "bad deadline"},
		{"POST", "/api/v1/hosts/h1/reboots", "tok", `{"deadline":"10m"}`, 201, `"baseline": []`},
		{"POST", "/api/v1/hosts/h1/reboots", "tok", "", 201, `"host": "h1"`},
		{"GET", "/api/v1/webhooks/deliveries?failed=true", "", "", 200, `[]`},
	}
	for _, s := range steps {
		status, body := call(t, s.method, ts.URL+s.path, s.token, s.body)
		if status != s.wantStatus || !strings.Contains(body, s.wantBody) {
			t.Errorf("%s %s: %d %s\nwant %d containing %q", s.method, s.path, status, body, s.wantStatus, s.wantBody)
		}
	}
}

// TestLatestLongPollWakes: a long-poll answers when the outcome arrives,
// not when its wait runs out.
func TestLatestLongPollWakes(t *testing.T) {
	ts, _, _ := bootTestServer(t)
	if status, body := call(t, "POST", ts.URL+"/api/v1/hosts/h1/stages", "", `{"stage":"init","ok":true}`); status != 200 {
		t.Fatalf("stage: %d %s", status, body)
	}
	type answer struct {
		status int
		rep    boot.Report
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := http.Get(ts.URL + "/api/v1/hosts/h1/boots/latest?wait=30s")
		if err != nil {
			done <- answer{}
			return
		}
		defer resp.Body.Close()
		var a answer
		a.status = resp.StatusCode
		_ = json.NewDecoder(resp.Body).Decode(&a.rep)
		done <- a
	}()
	time.Sleep(100 * time.Millisecond) // let the poll start (the result does not depend on it)
	if status, body := call(t, "POST", ts.URL+"/api/v1/hosts/h1/stages", "", `{"stage":"root-mount","ok":false,"message":"bad superblock"}`); status != 200 {
		t.Fatalf("stage: %d %s", status, body)
	}
	a := <-done
	if a.status != 200 || a.rep.Outcome != "failed" || a.rep.Message != "bad superblock" {
		t.Errorf("long-poll answered %d %+v", a.status, a.rep)
	}
}

func FuzzParseBootQuery(f *testing.F) {
	for _, s := range []string{"since=2026-11-26T04:00:00Z&wait=30s", "wait=10h", "limit=-1", "since=%zz", "wait=1e9s", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		bq, err := parseBootQuery(q)
		if err == nil && (bq.wait < 0 || bq.wait > MaxWait || bq.limit < 0) {
			t.Fatalf("parseBootQuery(%q) = %+v", raw, bq)
		}
	})
}
