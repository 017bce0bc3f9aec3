package main

import (
	"bytes"
	"context"
	"flag"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"netboot/internal/api"
	"netboot/internal/config"
	"netboot/internal/store"
	"netboot/internal/store/sqlite"
	"netboot/netconsole"
)

var update = flag.Bool("update", false, "rewrite golden files")

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -run %s -update to accept):\n%s", path, t.Name(), got)
	}
}

func TestLogsCommand(t *testing.T) {
	t.Setenv("TZ", "UTC")
	time.Local = time.UTC
	ctx := context.Background()
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	t0 := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	texts := []struct {
		level int8
		text  string
	}{
		{-1, "Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org)"},
		{-1, "Kernel command line: console=ttyS0 netconsole=6666@10.99.0.2/eth0,6666@10.99.0.1/"},
		{6, "virtio_net virtio0 eth0: link up"},
		{3, "VFS: Unable to mount root fs on unknown-block(0,0)"},
		{0, "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"},
	}
	var lines []store.LogLine
	for b := int64(7); b <= 8; b++ {
		for i, x := range texts {
			lines = append(lines, store.LogLine{Time: t0.Add(time.Duration(b)*time.Minute + time.Duration(i)*time.Millisecond),
				Host: "pi1", BootID: b, Seq: int64(i), KTime: int64(i) * 1234567, Level: x.level, Text: x.text})
		}
	}
	if err := db.AppendLogs(ctx, lines); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Config{Inventory: &config.Config{Hosts: []config.Host{{Name: "pi1"}}}, Store: db,
		Deps: api.Deps{Logs: &netconsole.Service{Store: db, Broker: netconsole.NewBroker(nil)}}}))
	defer srv.Close()
	global.server = srv.URL
	tests := []struct {
		name string
		o    logsOptions
	}{
		{"logs-latest.golden", logsOptions{}},
		{"logs-previous-grep.golden", logsOptions{boot: "-1", grep: "VFS"}},
		{"logs-all-level.golden", logsOptions{boot: "all", level: "err"}},
		{"logs-json.golden", logsOptions{boot: "7", limit: 1, asJSON: true}},
		{"logs-boots.golden", logsOptions{boot: "list"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := runLogs(ctx, &out, "pi1", tt.o); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, tt.name, out.Bytes())
		})
	}
	if err := runLogs(ctx, &bytes.Buffer{}, "pi1", logsOptions{boot: "-9"}); err == nil || !isAPIError(err) {
		t.Errorf("--boot -9: err = %v, want the server's refusal", err)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLogsFollow(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	t0 := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	if err := db.AppendLogs(ctx, []store.LogLine{{Time: t0, Host: "pi1", BootID: 3, Seq: -1, KTime: 0, Level: -1, Text: "Linux version 6.1"}}); err != nil {
		t.Fatal(err)
	}
	broker := netconsole.NewBroker(nil)
	srv := httptest.NewServer(api.New(api.Config{Inventory: &config.Config{Hosts: []config.Host{{Name: "pi1"}}}, Store: db,
		Deps: api.Deps{Logs: &netconsole.Service{Store: db, Broker: broker}}}))
	defer srv.Close()
	global.server = srv.URL
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- runLogs(ctx, &out, "pi1", logsOptions{follow: true}) }()
	waitFor := func(s string) {
		t.Helper()
		for i := 0; !strings.Contains(out.String(), s); i++ {
			if i > 1000 {
				t.Fatalf("output lacks %q:\n%s", s, out.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("Linux version 6.1")
	// Keep publishing until the follower's subscription is surely live.
	for i := 0; !strings.Contains(out.String(), "next boot"); i++ {
		broker.Publish([]store.LogLine{{Time: t0.Add(time.Hour + time.Duration(i)), Host: "pi1", BootID: 4, Seq: 0, KTime: 0, Level: 6, Text: "next boot"}})
		if i > 1000 {
			t.Fatalf("no live line:\n%s", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitFor("── pi1 boot 4 ──")
	cancel()
	if err := <-done; err != nil {
		t.Errorf("follow ended with %v", err)
	}
}
