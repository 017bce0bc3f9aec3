package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/store"
	"netboot/internal/store/sqlite"
	"netboot/netconsole"
)

func logTestServer(t *testing.T) (*httptest.Server, *netconsole.Broker, time.Time) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	t0 := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	var lines []store.LogLine
	for boot := int64(1); boot <= 3; boot++ {
		for i, txt := range []string{"Linux version 6.1", "eth0: link up", "Kernel panic - not syncing: VFS"} {
			lines = append(lines, store.LogLine{Time: t0.Add(time.Duration(boot)*time.Hour + time.Duration(i)*time.Second),
				Host: "guest", BootID: boot, Seq: int64(i), KTime: int64(i), Level: int8(6 - 6*(i/2)), Text: txt})
		}
	}
	lines = append(lines, store.LogLine{Time: t0, Host: "unknown:10.0.0.9", Seq: -1, KTime: -1, Level: -1, Text: "stray"})
	if err := db.AppendLogs(ctx, lines); err != nil {
		t.Fatal(err)
	}
	inv := &config.Config{Hosts: []config.Host{{Name: "guest"}}}
	b := netconsole.NewBroker(nil)
	s := New(Config{Inventory: inv, Store: db, Deps: Deps{Logs: &netconsole.Service{Store: db, Broker: b}},
		Clock: clock.NewFake(t0.Add(4 * time.Hour))})
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return ts, b, t0
}

func getLines(t *testing.T, url string) (int, []string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []string
	dec := json.NewDecoder(resp.Body)
	for {
		var l store.LogLine
		if dec.Decode(&l) != nil {
			break
		}
		out = append(out, fmt.Sprintf("%s/%d/%s", l.Host, l.BootID, l.Text))
	}
	return resp.StatusCode, out
}

func TestLogQueries(t *testing.T) {
	ts, _, _ := logTestServer(t)
	tests := []struct {
		query  string
		status int
		want   string
	}{
		{"/api/v1/hosts/guest/logs", 200, "[guest/3/Linux version 6.1 guest/3/eth0: link up guest/3/Kernel panic - not syncing: VFS]"},
		{"/api/v1/hosts/guest/logs?boot=-1", 200, "[guest/2/Linux version 6.1 guest/2/eth0: link up guest/2/Kernel panic - not syncing: VFS]"},
		{"/api/v1/hosts/guest/logs?boot=1&grep=link", 200, "[guest/1/eth0: link up]"},
		{"/api/v1/hosts/guest/logs?boot=all&level=err", 200, "[guest/1/Kernel panic - not syncing: VFS guest/2/Kernel panic - not syncing: VFS guest/3/Kernel panic - not syncing: VFS]"},
		{"/api/v1/hosts/guest/logs?boot=all&since=90m", 200, "[guest/3/Linux version 6.1 guest/3/eth0: link up guest/3/Kernel panic - not syncing: VFS]"},
		{"/api/v1/hosts/guest/logs?boot=all&limit=1", 200, "[guest/3/Kernel panic - not syncing: VFS]"},
		{"/api/v1/hosts/unknown:10.0.0.9/logs", 200, "[unknown:10.0.0.9/0/stray]"},
		{"/api/v1/hosts/guest/logs?boot=-5", 400, "[]"},
		{"/api/v1/hosts/guest/logs?grep=(", 400, "[]"},
		{"/api/v1/hosts/guest/logs?level=loud", 400, "[]"},
		{"/api/v1/hosts/nosuch/logs", 404, "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			status, lines := getLines(t, ts.URL+tt.query)
			if status != tt.status {
				t.Fatalf("status %d, want %d", status, tt.status)
			}
			if status == 200 && strings.Join([]string{"[", strings.Join(lines, " "), "]"}, "") != tt.want {
				t.Errorf("got  %v\nwant %s", lines, tt.want)
			}
		})
	}
}

func TestLogBootsRoute(t *testing.T) {
	ts, _, _ := logTestServer(t)
	resp, err := http.Get(ts.URL + "/api/v1/hosts/guest/logs/boots")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var boots []store.LogBoot
	if err := json.NewDecoder(resp.Body).Decode(&boots); err != nil {
		t.Fatal(err)
	}
	if len(boots) != 3 || boots[0].BootID != 1 || boots[2].Lines != 3 {
		t.Errorf("boots = %+v", boots)
	}
}

func TestLogFollow(t *testing.T) {
	ts, b, t0 := logTestServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/api/v1/hosts/guest/logs?follow=1&grep=up|live", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	next := func() store.LogLine {
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var l store.LogLine
				if err := json.Unmarshal([]byte(data), &l); err != nil {
					t.Fatal(err)
				}
				return l
			}
		}
		t.Fatalf("stream ended: %v", sc.Err())
		return store.LogLine{}
	}
	if l := next(); l.Text != "eth0: link up" || l.BootID != 3 {
		t.Fatalf("history line %+v", l)
	}
	// Live: a filtered-out line, then a matching one of the next boot.
	b.Publish([]store.LogLine{
		{Time: t0.Add(5 * time.Hour), Host: "guest", BootID: 4, Text: "not shown"},
		{Time: t0.Add(5 * time.Hour), Host: "other", BootID: 4, Text: "live other host"},
		{Time: t0.Add(5 * time.Hour), Host: "guest", BootID: 4, Text: "live line"},
	})
	if l := next(); l.Text != "live line" || l.BootID != 4 {
		t.Fatalf("live line %+v", l)
	}
}
