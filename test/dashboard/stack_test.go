package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"netboot/internal/api"
	"netboot/internal/boot"
	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/dashboard"
	"netboot/internal/store"
	"netboot/internal/store/sqlite"
	"netboot/netconsole"
)

// inventoryYAML is the test fleet. Every host has its own loopback address,
// so the netconsole collector attributes datagrams by source as it would on
// a boot network. %s is the smoke peer's address.
const inventoryYAML = `
server:
  address: 127.0.0.1
  artifact_root: .
  api_token: dashboard-test-token
classes:
  rpi4:
    arch: arm64
    firmware: rpi
  rpi4-smoke:
    arch: arm64
    firmware: rpi
    smoke:
      - {name: sshd, kind: tcp, target: "%s", timeout: 200ms, deadline: 1s}
  x86:
    arch: amd64
    firmware: uefi
hosts:
  - {name: pi-ok, mac: "dc:a6:32:00:01:01", ip: 127.0.1.11, class: rpi4}
  - {name: pi-fail, mac: "dc:a6:32:00:01:02", ip: 127.0.1.12, class: rpi4}
  - {name: pi-stuck, mac: "dc:a6:32:00:01:03", ip: 127.0.1.13, class: rpi4}
  - {name: pi-regress, mac: "dc:a6:32:00:01:04", ip: 127.0.1.14, class: rpi4-smoke}
  - {name: udoo-skip, mac: "00:c0:08:00:01:05", ip: 127.0.1.15, class: x86}
  - {name: x86-boot, mac: "00:c0:08:00:01:06", ip: 127.0.1.16, class: x86}
  - {name: pi-live, mac: "dc:a6:32:00:01:07", ip: 127.0.1.17, class: rpi4}
  - {name: pi-new, mac: "dc:a6:32:00:01:08", ip: 127.0.1.18, class: rpi4}
`

// wantOutcomes is what the recorded scenario must lead to (dashboard keys).
var wantOutcomes = map[string]string{
	"pi-ok": "succeeded", "pi-fail": "failed", "pi-stuck": "stuck", "pi-regress": "regression",
	"udoo-skip": "skipped", "x86-boot": "in-progress", "pi-live": "in-progress", "pi-new": "none",
}

// stack is a netbootd-like server: store, tracker, netconsole collector,
// API and dashboard on one HTTP listener on 127.0.0.1.
type stack struct {
	t       *testing.T
	log     *zap.Logger
	clk     *clock.Fake
	inv     *config.Config
	db      *sqlite.DB
	tracker *boot.Tracker
	broker  *netconsole.Broker
	ncAddr  *net.UDPAddr
	url     string
	peer    net.Listener // the smoke checks' TCP peer
	senders map[string]*net.UDPConn
	sent    int // netconsole lines sent
}

func newStack(t *testing.T) *stack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s := &stack{t: t, log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
		clk: clock.NewFake(time.Now().UTC().Truncate(time.Second)), senders: map[string]*net.UDPConn{}}
	s.startPeer()
	inv, err := config.Parse("dashboard-test.yaml", t.TempDir(), []byte(fmt.Sprintf(inventoryYAML, s.peer.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	s.inv = inv
	if s.db, err = sqlite.Open(ctx, filepath.Join(t.TempDir(), "netboot.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.db.Close() })
	s.tracker, err = boot.New(ctx, boot.Config{Inventory: inv, Store: s.db, Log: s.log.Named("boot"), Clock: s.clk,
		SmokeInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.tracker.Close() })
	s.startNetconsole(ctx)
	s.startHTTP(ctx)
	return s
}

// startPeer runs the TCP listener the rpi4-smoke class's check connects to.
func (s *stack) startPeer() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.t.Fatal(err)
	}
	s.peer = ln
	s.t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

func (s *stack) startNetconsole(ctx context.Context) {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		s.t.Fatal(err)
	}
	s.ncAddr = conn.LocalAddr().(*net.UDPAddr)
	s.broker = netconsole.NewBroker(nil)
	resolve := netconsole.ResolverFunc(func(ip netip.Addr) (string, bool) {
		for _, h := range s.inv.Hosts {
			if a, ok := h.Addr(); ok && a == ip {
				return h.Name, true
			}
		}
		return "", false
	})
	nc, err := netconsole.New(netconsole.Config{RcvBuf: -1}, netconsole.Deps{Log: s.log.Named("netconsole"), Clock: s.clk,
		Resolver: resolve, Tracker: s.tracker, Events: s.tracker, Store: s.db, Broker: s.broker, Observer: s.tracker}, conn)
	if err != nil {
		s.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- nc.Serve(ctx) }()
	s.t.Cleanup(func() {
		nc.Close()
		if err := <-done; err != nil {
			s.t.Errorf("netconsole serve: %v", err)
		}
	})
}

func (s *stack) startHTTP(ctx context.Context) {
	apiSrv := api.New(api.Config{Inventory: s.inv, Store: s.db, Log: s.log.Named("api"), Clock: s.clk,
		Deps: api.Deps{Logs: &netconsole.Service{Store: s.db, Broker: s.broker}}})
	dash, err := dashboard.New(dashboard.Config{Inventory: s.inv, Boots: s.db, Logs: s.db, Log: s.log.Named("dashboard"), Clock: s.clk,
		Catalogue: s.tracker.Catalogue()})
	if err != nil {
		s.t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", apiSrv)
	mux.Handle("/static/", dash)
	mux.Handle("/", dash)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	s.t.Cleanup(func() { srv.Close() })
	s.url = "http://" + ln.Addr().String()
	if !s.apiStreams(ctx, "pi-live") {
		s.t.Fatalf("the API does not stream %s as Server-Sent Events", dashboard.DefaultStreamURL)
	}
}

// apiStreams reports whether the API answers the live view's SSE URL.
func (s *stack) apiStreams(ctx context.Context, host string) bool {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	url := s.url + strings.ReplaceAll(dashboard.DefaultStreamURL, "{name}", host)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
}

// send sends one plain-format netconsole datagram from host's address and
// waits until the collector has received it (it reaches the broker).
func (s *stack) send(host, text string) {
	s.t.Helper()
	sub := s.broker.Subscribe(host, 64)
	defer s.broker.Unsubscribe(sub)
	if _, err := s.sender(host).Write([]byte(text + "\n")); err != nil {
		s.t.Fatalf("send netconsole line of %s: %v", host, err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l := <-sub.C:
			if l.Text == text {
				s.sent++
				return
			}
		case <-timeout:
			s.t.Fatalf("the collector did not receive %q from %s", text, host)
		}
	}
}

func (s *stack) sender(host string) *net.UDPConn {
	if c, ok := s.senders[host]; ok {
		return c
	}
	h, ok := s.inv.HostByName(host)
	if !ok {
		s.t.Fatalf("unknown host %s", host)
	}
	ip, _ := h.Addr()
	c, err := net.DialUDP("udp4", &net.UDPAddr{IP: ip.AsSlice()}, s.ncAddr)
	if err != nil {
		s.t.Fatalf("netconsole sender for %s: %v", host, err)
	}
	s.t.Cleanup(func() { c.Close() })
	s.senders[host] = c
	return c
}

// play runs the recorded scenario.
func (s *stack) play(steps []step) {
	s.t.Helper()
	ctx := context.Background()
	var once sync.Once
	for i, st := range steps {
		if st.after > 0 {
			s.clk.Advance(st.after)
		}
		var err error
		switch st.Do {
		case doEvent:
			_, err = s.tracker.Record(ctx, st.event(s.clk.Now()))
		case doNetconsole:
			s.send(st.Host, st.Text)
		case doExpect:
			_, err = s.tracker.ExpectReboot(ctx, st.Host, st.deadline)
		case doStopPeer:
			once.Do(func() { err = s.peer.Close() })
		case doWait:
			err = s.waitOutcome(st.Host)
		}
		if err != nil {
			s.t.Fatalf("scenario step %d (%s %s %s): %v", i+1, st.Do, st.Host, st.Kind, err)
		}
	}
	s.settle()
}

// settle lets the collector's flush timer run once, so that every line
// received so far is in the store.
func (s *stack) settle() {
	s.clk.Advance(250 * time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if st, err := s.db.LogStats(context.Background()); err == nil && st.Lines >= int64(s.sent) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("the collector did not store the %d lines sent", s.sent)
}

// waitOutcome waits (in real time, up to 30 s) until host's newest boot
// has a final outcome. Every second it advances the fake clock a little,
// so that the collector flushes lines to the store (and the tracker's
// signature matcher).
func (s *stack) waitOutcome(host string) error {
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		if i%4 == 0 {
			s.clk.Advance(200 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		r, err := s.tracker.Wait(ctx, host, time.Time{})
		cancel()
		if err == nil && r.Terminal() {
			return nil
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return fmt.Errorf("%s: no final outcome within 30s", host)
}

// checkOutcomes verifies the scenario led to the outcomes the browser
// tests expect, straight from the store.
func (s *stack) checkOutcomes() {
	s.t.Helper()
	latest, err := s.db.LatestBoots(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	for host, want := range wantOutcomes {
		b, ok := latest[host]
		got := "none"
		if ok {
			got = b.Outcome
			if b.Outcome == store.OutcomeFailed && b.Reason == boot.ReasonRegression {
				got = "regression"
			}
		}
		if got != want {
			s.t.Errorf("after the scenario %s's newest boot is %q (%s, %s), want %q", host, got, b.Reason, b.Stage, want)
		}
	}
}

// report reads a boot's persisted report.
func (s *stack) report(id int64) boot.Report {
	s.t.Helper()
	b, err := s.db.GetBoot(context.Background(), id)
	if err != nil {
		s.t.Fatal(err)
	}
	var r boot.Report
	if err := json.Unmarshal(b.State, &r); err != nil {
		s.t.Fatal(err)
	}
	return r
}

// latestBoot returns host's newest boot.
func (s *stack) latestBoot(host string) store.Boot {
	s.t.Helper()
	boots, err := s.db.ListBoots(context.Background(), host, 1)
	if err != nil || len(boots) == 0 {
		s.t.Fatalf("no boot of %s: %v", host, err)
	}
	return boots[0]
}
