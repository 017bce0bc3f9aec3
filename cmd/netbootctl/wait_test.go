package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"netboot/internal/api"
	"netboot/internal/boot"
	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/event"
	"netboot/internal/store/sqlite"
)

// netbootctlBinary builds this command into a temp dir (the build cache
// makes the second build cheap).
func netbootctlBinary(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "netbootctl")
	if out, err := exec.Command("go", "build", "-o", bin, dir).CombinedOutput(); err != nil {
		t.Fatalf("build netbootctl: %v\n%s", err, out)
	}
	return bin
}

// waitLab is a tracker behind a real API server on loopback.
type waitLab struct {
	tr  *boot.Tracker
	clk *clock.Fake
	url string
}

var waitT0 = time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC)

func newWaitLab(t *testing.T, peerAddr string) *waitLab {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	inv := &config.Config{
		Classes: map[string]config.Class{
			"plain": {Arch: "amd64"},
			"svc": {Arch: "amd64", Smoke: []config.SmokeCheck{{Name: "service-port", Kind: "tcp", Target: "{{.svc}}",
				Deadline: config.Duration(2 * time.Second)}}},
		},
		Hosts: []config.Host{
			{Name: "ok1", MAC: "02:00:00:00:01:01", Class: "plain", Arch: "amd64"},
			{Name: "bad1", MAC: "02:00:00:00:01:02", Class: "plain", Arch: "amd64"},
			{Name: "reg1", MAC: "02:00:00:00:01:03", Class: "svc", Arch: "amd64", Variables: map[string]string{"svc": peerAddr}},
			{Name: "hang1", MAC: "02:00:00:00:01:04", Class: "plain", Arch: "amd64"},
			{Name: "gone1", MAC: "02:00:00:00:01:05", Class: "plain", Arch: "amd64"},
			{Name: "slow1", MAC: "02:00:00:00:01:06", Class: "plain", Arch: "amd64"},
		},
	}
	clk := clock.NewFake(waitT0)
	tr, err := boot.New(ctx, boot.Config{Inventory: inv, Store: db, Clock: clk, SmokeInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	srv := httptest.NewServer(api.New(api.Config{Inventory: inv, Store: db, Deps: api.Deps{Boots: tr}}))
	t.Cleanup(srv.Close)
	return &waitLab{tr: tr, clk: clk, url: srv.URL}
}

// boot records a boot of host through the given stages.
func (l *waitLab) boot(t *testing.T, host string, last event.Stage, fail bool) {
	t.Helper()
	evs := []event.Event{{Kind: event.DHCPRequest, Stage: event.StageDHCP, Attrs: map[string]string{"client": "firmware"}}}
	for s := event.StageFirmware; s <= last; s++ {
		evs = append(evs, event.Event{Kind: event.StageReport, Stage: s})
	}
	if fail {
		evs[len(evs)-1].Failed, evs[len(evs)-1].Message = true, "mount /dev/rbd0: invalid argument"
	}
	for _, e := range evs {
		l.clk.Advance(time.Second)
		e.Host, e.Time = host, l.clk.Now()
		if _, err := l.tr.Record(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWaitExitCodes runs the built netbootctl against the API for each
// outcome and checks its exit status and what it prints.
func TestWaitExitCodes(t *testing.T) {
	bin := netbootctlBinary(t)
	peer, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := peer.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	lab := newWaitLab(t, peer.Addr().String())
	ctx := context.Background()
	since := waitT0.Format(time.RFC3339)

	lab.boot(t, "ok1", event.StageUserspace, false)
	lab.boot(t, "bad1", event.StageRootMount, true)
	if _, err := lab.tr.ExpectReboot(ctx, "reg1", 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	peer.Close() // the service does not come back after the reboot
	lab.boot(t, "reg1", event.StageUserspace, false)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := lab.tr.Wait(wctx, "reg1", waitT0); err != nil {
		t.Fatal(err)
	}
	lab.boot(t, "hang1", event.StageRootMap, false)
	if _, err := lab.tr.ExpectReboot(ctx, "gone1", time.Minute); err != nil {
		t.Fatal(err)
	}
	lab.boot(t, "slow1", event.StageInit, false)
	lab.clk.Advance(5 * time.Minute) // hang1 stuck at root-map, gone1 skipped; slow1 stuck too
	lab.boot(t, "slow1", event.StageKernel, false)

	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := "http://" + closed.Addr().String()
	closed.Close()

	cases := []struct {
		name     string
		args     []string
		server   string
		wantCode int
		wantOut  string
	}{
		{"succeeded", []string{"wait", "ok1", "--since", since, "--timeout", "30s"}, lab.url, 0, "ok1: succeeded"},
		{"failed", []string{"wait", "bad1", "--since", since, "--timeout", "30s"}, lab.url, 1, "bad1: failed: boot 2 at root-map: mount /dev/rbd0: invalid argument"},
		{"regression", []string{"wait", "reg1", "--since", since, "--timeout", "30s"}, lab.url, 1, "reg1: regression: boot 3 at userspace: regression: 1 of 1 smoke checks failed: service-port"},
		{"stuck", []string{"wait", "hang1", "--since", since, "--timeout", "30s"}, lab.url, 2, "hang1: stuck: boot 4 at root-map: no progress past root-map"},
		{"skipped", []string{"wait", "gone1", "--since", since, "--timeout", "30s"}, lab.url, 2, "gone1: skipped: boot "},
		{"timeout", []string{"wait", "slow1", "--since", lab.clk.Now().Add(-3 * time.Second).Format(time.RFC3339), "--timeout", "1s"}, lab.url, 2, "still in-progress at kernel"},
		{"worst-of-several", []string{"wait", "ok1", "bad1", "hang1", "--since", since, "--timeout", "30s"}, lab.url, 2, "hang1: stuck"},
		{"unknown-host", []string{"wait", "nope1", "--since", since, "--timeout", "5s"}, lab.url, 3, "nope1: could not ask netbootd: server answered 404: unknown host"},
		{"cannot-ask", []string{"wait", "ok1", "--since", since, "--timeout", "30s"}, deadURL, 3, "ok1: could not ask netbootd"},
		{"no-since", []string{"wait", "ok1", "--timeout", "5s"}, lab.url, 3, "--since is required"},
		{"json", []string{"wait", "bad1", "--since", since, "--timeout", "30s", "--json"}, lab.url, 1, `"status": "failed"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runCLI(t, bin, tc.server, tc.args...)
			if code != tc.wantCode || !strings.Contains(out, tc.wantOut) {
				t.Errorf("netbootctl %s: exit %d, output:\n%s\nwant exit %d and output containing %q",
					strings.Join(tc.args, " "), code, out, tc.wantCode, tc.wantOut)
			}
		})
	}
}

// TestWaitWakesOnOutcome starts the wait before the boot ends: the
// long-poll answers when the outcome is recorded.
func TestWaitWakesOnOutcome(t *testing.T) {
	bin := netbootctlBinary(t)
	lab := newWaitLab(t, "127.0.0.1:1")
	lab.boot(t, "ok1", event.StageInit, false)
	since := waitT0.Format(time.RFC3339)
	cmd := exec.Command(bin, "--server", lab.url, "wait", "ok1", "--since", since, "--timeout", "60s")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	time.Sleep(300 * time.Millisecond) // let it reach the long-poll (order does not change the result)
	for _, s := range []event.Stage{event.StageNetwork, event.StageRootMap, event.StageUserspace} {
		lab.clk.Advance(time.Second)
		if _, err := lab.tr.Record(context.Background(), event.Event{Host: "ok1", Kind: event.StageReport, Stage: s}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	err := cmd.Wait()
	t.Logf("wait returned %v after the outcome was recorded", time.Since(start).Round(time.Millisecond))
	if err != nil || !strings.Contains(out.String(), "ok1: succeeded") {
		t.Errorf("wait: %v\n%s", err, out.String())
	}
}

func runCLI(t *testing.T, bin, server string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--server", server}, args...)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("run netbootctl: %v", err)
	return -1, ""
}
