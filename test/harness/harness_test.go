package harness

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"netboot/internal/testenv"
)

func TestSerialExpect(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		pattern string
		want    string
		wantErr bool
	}{
		{"crlf stripped", "SeaBIOS\r\nLinux version 6.1\r\n", `^Linux version`, "Linux version 6.1", false},
		{"redrawn line keeps last draw", "progress 10%\rprogress 100%\n", `progress`, "progress 100%", false},
		{"nul bytes dropped", "a\x00b\n", `^ab$`, "ab", false},
		{"no match before EOF", "one\ntwo\n", `three`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			s := NewSerial(time.Now(), &log)
			go s.ReadFrom(strings.NewReader(tt.input))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			l, err := s.Expect(ctx, regexp.MustCompile(tt.pattern))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Expect error = %v, wantErr %v", err, tt.wantErr)
			}
			if l.Text != tt.want {
				t.Errorf("Expect = %q, want %q", l.Text, tt.want)
			}
		})
	}
}

func TestSerialExpectAdvancesCursor(t *testing.T) {
	pr, pw := io.Pipe()
	s := NewSerial(time.Now(), nil)
	go s.ReadFrom(pr)
	go func() {
		io.WriteString(pw, "boot 1\nmarker\nboot 2\nmarker\n")
		pw.Close()
	}()
	ctx := context.Background()
	first, err := s.Expect(ctx, regexp.MustCompile(`^marker$`))
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.Expect(ctx, regexp.MustCompile(`^marker$`))
	if err != nil {
		t.Fatal(err)
	}
	if first.N != 1 || second.N != 3 {
		t.Errorf("matches at lines %d and %d, want 1 and 3", first.N, second.N)
	}
	if _, err := s.Expect(ctx, regexp.MustCompile(`^marker$`)); err == nil {
		t.Error("third Expect matched, want console-closed error")
	}
}

func TestSerialExpectHonoursContext(t *testing.T) {
	s := NewSerial(time.Now(), nil) // never fed: waits until ctx ends
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.ExpectFrom(ctx, 0, regexp.MustCompile(`x`))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestParseEnvFile(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		wantErr bool
	}{
		{"plain", "KVER=6.1.0-56-amd64\nROOT=/x\n", map[string]string{"KVER": "6.1.0-56-amd64", "ROOT": "/x"}, false},
		{"comments and quotes", "# c\n\nA=\"q\"\n", map[string]string{"A": "q"}, false},
		{"no equals", "garbage\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseEnvFile(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func FuzzParseEnvFile(f *testing.F) {
	for _, seed := range []string{"KVER=1\n", "#x\nA=\"b\"\n", "=\n", "no\n", "A=B=C"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		vars, err := parseEnvFile(strings.NewReader(in))
		if err == nil && vars == nil {
			t.Fatal("nil map without error")
		}
	})
}

func TestParseQMPMessage(t *testing.T) {
	tests := []struct {
		name      string
		line      string
		wantEvent string
		wantErr   bool
		wantQMP   bool
	}{
		{"greeting", `{"QMP": {"version": {}, "capabilities": []}}`, "", false, true},
		{"event", `{"timestamp": {"seconds": 1}, "event": "RESET", "data": {}}`, "RESET", false, false},
		{"error", `{"error": {"class": "GenericError", "desc": "no"}}`, "", false, false},
		{"garbage", `{"QMP"`, "", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parseQMPMessage([]byte(tt.line))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if m.Event != tt.wantEvent || (m.QMP != nil) != tt.wantQMP {
				t.Errorf("got event %q qmp %v", m.Event, m.QMP != nil)
			}
		})
	}
}

func FuzzParseQMPMessage(f *testing.F) {
	for _, seed := range []string{`{"return": {}}`, `{"event":"STOP"}`, `{"error":{"class":"x","desc":"y"}}`, `[]`, `{`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		parseQMPMessage(line) // must not panic
	})
}

func TestCPIOWriterIsReadableByCpio(t *testing.T) {
	testenv.RequireTools(t, "cpio", "gzip")
	var buf bytes.Buffer
	w := NewCPIOWriter(&buf)
	steps := []error{
		w.File("etc/hostname", 0o644, []byte("vm\n")),
		w.Symlink("bin/sh", "busybox"),
		w.CharDev("dev/console", 0o600, 5, 1),
		w.File("init", 0o755, []byte("#!/bin/sh\n")),
		w.Close(),
	}
	for _, err := range steps {
		if err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("sh", "-c", "gzip -dc | cpio -t --quiet")
	cmd.Stdin = &buf
	out := Output(t, cmd)
	want := []string{"etc", "etc/hostname", "bin", "bin/sh", "dev", "dev/console", "init"}
	if got := strings.Fields(out); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("cpio -t = %q, want %q", got, want)
	}
}

func TestProcStopByPID(t *testing.T) {
	testenv.RequireTools(t, "sleep")
	p := StartProc(t, "sleep", exec.Command("sleep", "1000"), filepath.Join(t.TempDir(), "sleep.log"))
	if p.Exited() {
		t.Fatal("sleep exited at once")
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if !p.Exited() {
		t.Fatal("process still running after Stop")
	}
	if err := p.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestNetnsSocketsAndPeer(t *testing.T) {
	ns := NewNetns(t, NetnsConfig{Part: "nbh"})
	l := ns.Listen(t, "tcp4", netip.AddrPortFrom(ns.Addr, 0).String())
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		io.WriteString(c, "hello from the netns\n")
		c.Close()
	}()
	// The bridge address does not exist in the test's own namespace.
	if c, err := net.DialTimeout("tcp4", l.Addr().String(), time.Second); err == nil {
		c.Close()
		if !hostHasAddr(ns.Addr) {
			t.Fatalf("dialled %s from the host namespace: the listener is not isolated", l.Addr())
		}
	}
	peer := ns.AddPeer(t, "52:54:00:aa:00:02", netip.MustParsePrefix("10.66.0.2/24"))
	if peer.MAC != "52:54:00:aa:00:02" {
		t.Errorf("peer MAC = %q", peer.MAC)
	}
	host, port, _ := net.SplitHostPort(l.Addr().String())
	out := peer.Run(t, "busybox", "nc", "-w", "5", host, port)
	if out != "hello from the netns\n" {
		t.Errorf("peer read %q", out)
	}
	tap := ns.AddTap(t)
	if !strings.Contains(ns.IP(t, "link", "show", tap), "master nbbr0") {
		t.Errorf("tap %s is not on the bridge", tap)
	}
}

func hostHasAddr(a netip.Addr) bool {
	addrs, _ := net.InterfaceAddrs()
	for _, x := range addrs {
		if p, err := netip.ParsePrefix(x.String()); err == nil && p.Addr() == a {
			return true
		}
	}
	return false
}

func TestNetnsRemovedWithItsProcesses(t *testing.T) {
	var name string
	var pid int
	t.Run("inner", func(t *testing.T) {
		ns := NewNetns(t, NetnsConfig{Part: "nbh"})
		name = ns.Name
		// Started without StartProc: the netns cleanup must still stop it.
		cmd := ns.Command(context.Background(), "sleep", "1000")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid = cmd.Process.Pid
		go cmd.Wait()
	})
	if name == "" {
		return // inner test skipped
	}
	if _, err := os.Stat(filepath.Join("/var/run/netns", name)); err == nil {
		t.Errorf("netns %s still exists after its test ended", name)
	}
	if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); err == nil {
		if b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm")); strings.TrimSpace(string(b)) == "sleep" {
			t.Errorf("pid %d still runs after its netns was removed", pid)
		}
	}
}

func TestNewNetnsSweepsNamespacesOfDeadTests(t *testing.T) {
	RequireNetns(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := "nbhsweep-" + strconv.Itoa(dead.Process.Pid) + "-1"
	if out, err := exec.Command("ip", "netns", "add", stale).CombinedOutput(); err != nil {
		t.Fatalf("add %s: %v: %s", stale, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", stale).Run() })
	live := NewNetns(t, NetnsConfig{Part: "nbhsweep"})
	if _, err := os.Stat(filepath.Join("/var/run/netns", stale)); err == nil {
		t.Errorf("stale netns %s of exited pid %d survived NewNetns", stale, dead.Process.Pid)
	}
	if _, err := os.Stat(filepath.Join("/var/run/netns", live.Name)); err != nil {
		t.Errorf("the new netns %s is missing: %v", live.Name, err)
	}
}
