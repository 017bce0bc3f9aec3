package boot

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"netboot/internal/config"
	"netboot/internal/testenv"
	"netboot/rbd"
	"netboot/test/cephlab"
)

func quick(chk config.SmokeCheck) config.SmokeCheck {
	chk.Timeout = config.Duration(2 * time.Second)
	if chk.Deadline == 0 {
		chk.Deadline = config.Duration(2 * time.Second)
	}
	return chk
}

// TestSmokeChecksAgainstLocalPeers runs tcp, http, command and netconsole
// checks against a real TCP listener, a real HTTP server and real
// programs.
func TestSmokeChecksAgainstLocalPeers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			fmt.Fprint(w, `{"status":"HEALTH_OK","osds":3}`)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	vars := map[string]string{"name": "udoo1", "addr": ln.Addr().String(), "url": srv.URL}
	seen := func(re *regexp.Regexp) bool { return re.MatchString("systemd[1]: Reached target Multi-User System.") }
	cases := []struct {
		chk     config.SmokeCheck
		ok      bool
		message string
	}{
		{config.SmokeCheck{Name: "tcp-up", Kind: "tcp", Target: "{{.addr}}"}, true, "ok"},
		{config.SmokeCheck{Name: "tcp-down", Kind: "tcp", Target: closedAddr}, false, "connection refused"},
		{config.SmokeCheck{Name: "http-status", Kind: "http", Target: "{{.url}}/health"}, true, "ok"},
		{config.SmokeCheck{Name: "http-body", Kind: "http", Target: "{{.url}}/health", Expect: `200 "status":"HEALTH_OK"`}, true, "ok"},
		{config.SmokeCheck{Name: "http-body-mismatch", Kind: "http", Target: "{{.url}}/health", Expect: `200 HEALTH_ERR`}, false, "body does not match"},
		{config.SmokeCheck{Name: "http-404", Kind: "http", Target: "{{.url}}/nope"}, false, "status 404, want 200"},
		{config.SmokeCheck{Name: "http-expect-404", Kind: "http", Target: "{{.url}}/nope", Args: []string{"status=404"}}, true, "ok"},
		{config.SmokeCheck{Name: "command-vars", Kind: "command", Target: "sh", Args: []string{"-c", "echo host={{.name}}"}, Expect: "host=udoo1"}, true, "ok"},
		{config.SmokeCheck{Name: "command-exit", Kind: "command", Target: "sh", Args: []string{"-c", "echo broken >&2; exit 3"}}, false, "exit status 3: broken"},
		{config.SmokeCheck{Name: "command-missing-var", Kind: "command", Target: "echo", Args: []string{"{{.nope}}"}}, false, "map has no entry"},
		{config.SmokeCheck{Name: "netconsole-seen", Kind: "netconsole", Target: `Reached target Multi-User`}, true, "ok"},
		{config.SmokeCheck{Name: "netconsole-unseen", Kind: "netconsole", Target: `Reached target Graphical`}, false, "no line of this boot matched"},
		{config.SmokeCheck{Name: "osd-unconfigured", Kind: "ceph-osd-up", Target: "1"}, false, "no Ceph connection"},
	}
	c := &Checker{Interval: 50 * time.Millisecond}
	for _, tc := range cases {
		t.Run(tc.chk.Name, func(t *testing.T) {
			t.Parallel()
			res := c.Run(context.Background(), quick(tc.chk), vars, seen, 0)
			if res.OK != tc.ok || !strings.Contains(res.Message, tc.message) {
				t.Errorf("%s: ok=%v message=%q, want ok=%v message containing %q", tc.chk.Name, res.OK, res.Message, tc.ok, tc.message)
			}
		})
	}
}

// TestSmokeRetriesUntilItPasses: the peer (a command) fails its first try
// and passes the next; the check must retry and pass.
func TestSmokeRetriesUntilItPasses(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "tried")
	c := &Checker{Interval: 20 * time.Millisecond}
	chk := config.SmokeCheck{Name: "second-time", Kind: "command", Target: "sh",
		Args:     []string{"-c", `if [ -e "$0" ]; then exit 0; fi; touch "$0"; echo "not yet"; exit 1`, marker},
		Deadline: config.Duration(60 * time.Second)}
	res := c.Run(context.Background(), chk, nil, nil, 0)
	if !res.OK || res.Attempts != 2 {
		t.Errorf("ok=%v after %d attempts (%s), want a pass on the second", res.OK, res.Attempts, res.Message)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("first try did not run: %v", err)
	}
}

// TestSmokeDNSWithDnsmasqInNetns runs dnsmasq inside a network namespace
// this test creates, reached through a veth pair, and resolves against it.
func TestSmokeDNSWithDnsmasqInNetns(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip", "dnsmasq")
	server := dnsmasqInNetns(t, map[string]string{"osd1.lab.test": "10.77.0.21", "dns1.lab.test": "10.77.0.53"})
	c := &Checker{Interval: 50 * time.Millisecond}
	cases := []struct {
		name, expect string
		ok           bool
		message      string
	}{
		{"osd1.lab.test", "10.77.0.21", true, "ok"},
		{"dns1.lab.test", "", true, "ok"},
		{"osd1.lab.test", "10.77.0.99", false, "want 10.77.0.99"},
		{"missing.lab.test", "10.77.0.21", false, "no such host"},
	}
	for _, tc := range cases {
		chk := quick(config.SmokeCheck{Name: "dns", Kind: "dns", Target: tc.name, Expect: tc.expect,
			Args: []string{"server={{.dns}}"}, Deadline: config.Duration(2 * time.Second)})
		res := c.Run(context.Background(), chk, map[string]string{"dns": server}, nil, 0)
		if res.OK != tc.ok || !strings.Contains(res.Message, tc.message) {
			t.Errorf("dns %s→%s: ok=%v %q, want ok=%v containing %q", tc.name, tc.expect, res.OK, res.Message, tc.ok, tc.message)
		}
	}
}

// dnsmasqInNetns starts dnsmasq in a fresh namespace answering records,
// and returns its address (ip:53). Everything is removed in cleanup.
func dnsmasqInNetns(t *testing.T, records map[string]string) string {
	t.Helper()
	id := rand.IntN(1 << 16)
	ns, hostIf, nsIf := fmt.Sprintf("nbout-dns-%04x", id), fmt.Sprintf("nbo%04xh", id), fmt.Sprintf("nbo%04xn", id)
	subnet := fmt.Sprintf("10.%d.%d", 200+id%50, (id/50)%250)
	hostIP, nsIP := subnet+".1", subnet+".2"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run("ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", hostIf).Run() })
	run("ip", "link", "set", nsIf, "netns", ns)
	run("ip", "addr", "add", hostIP+"/30", "dev", hostIf)
	run("ip", "link", "set", hostIf, "up")
	run("ip", "netns", "exec", ns, "ip", "addr", "add", nsIP+"/30", "dev", nsIf)
	run("ip", "netns", "exec", ns, "ip", "link", "set", nsIf, "up")
	run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
	args := []string{"netns", "exec", ns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--bind-interfaces", "--listen-address=" + nsIP, "--local=/lab.test/", "--port=53", "--user=root", "--pid-file=" + filepath.Join(t.TempDir(), "dnsmasq.pid"), "--log-facility=-"}
	for name, ip := range records {
		args = append(args, "--address=/"+name+"/"+ip)
	}
	cmd := exec.Command("ip", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logf, err := os.Create(filepath.Join(t.TempDir(), "dnsmasq.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dnsmasq: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() })
	server := nsIP + ":53"
	// Wait until dnsmasq answers (it binds in a few milliseconds).
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, server)
	}}
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := r.LookupHost(ctx, "dns1.lab.test")
		cancel()
		if err == nil {
			break
		}
		if i == 50 {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("dnsmasq in %s never answered: %v\n%s", ns, err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return server
}

// TestSmokeCephOSDUpThenStopped checks ceph-osd-up against the throwaway
// cluster of test/cephlab: passing while osd.0 runs, failing with "down"
// once it is stopped.
func TestSmokeCephOSDUpThenStopped(t *testing.T) {
	testenv.Short(t)
	lab := cephlab.Start(t, cephlab.Config{})
	c := &Checker{OSD: CephCLI{Conf: lab.ConfPath}, Interval: 500 * time.Millisecond}
	chk := config.SmokeCheck{Name: "osd0", Kind: "ceph-osd-up", Target: "osd.{{.osd}}", Timeout: config.Duration(15 * time.Second),
		Deadline: config.Duration(60 * time.Second)}
	vars := map[string]string{"osd": "0"}
	if res := c.Run(context.Background(), chk, vars, nil, 0); !res.OK {
		t.Fatalf("osd.0 running: %s", res.Message)
	}
	missing := config.SmokeCheck{Name: "osd7", Kind: "ceph-osd-up", Target: "7", Timeout: config.Duration(15 * time.Second),
		Deadline: config.Duration(30 * time.Second)}
	if res := c.Run(context.Background(), missing, nil, nil, 1); res.OK || !strings.Contains(res.Message, "does not exist") {
		t.Errorf("osd.7: ok=%v %q, want a failure naming a missing OSD", res.OK, res.Message)
	}
	if err := lab.StopOSD(); err != nil {
		t.Fatal(err)
	}
	// The monitor marks a cleanly stopped OSD down at once; allow it a
	// bounded while (this bounds the wait, it asserts no speed).
	var res SmokeResult
	for range 60 {
		if res = c.Run(context.Background(), chk, vars, nil, 1); !res.OK {
			break
		}
		time.Sleep(time.Second)
	}
	if res.OK || !strings.Contains(res.Message, "osd.0: down") {
		t.Errorf("osd.0 stopped: ok=%v %q, want failure \"down\"", res.OK, res.Message)
	}
}

func TestParseOSDDump(t *testing.T) {
	dump := []byte(`{"epoch":12,"osds":[{"osd":0,"up":1,"in":1},{"osd":1,"up":0,"in":1},{"osd":2,"up":1,"in":0}]}`)
	cases := []struct {
		id      int
		up, in  bool
		wantErr bool
	}{{0, true, true, false}, {1, false, true, false}, {2, true, false, false}, {3, false, false, true}}
	for _, tc := range cases {
		up, in, err := rbd.ParseOSDDump(dump, tc.id)
		if up != tc.up || in != tc.in || (err != nil) != tc.wantErr {
			t.Errorf("osd.%d: up=%v in=%v err=%v", tc.id, up, in, err)
		}
	}
}

func FuzzParseOSDDump(f *testing.F) {
	f.Add([]byte(`{"osds":[{"osd":0,"up":1,"in":1}]}`), 0)
	f.Add([]byte(`{"osds":null}`), 1)
	f.Add([]byte(`garbage`), 0)
	f.Fuzz(func(t *testing.T, data []byte, id int) {
		up, in, err := rbd.ParseOSDDump(data, id)
		if err != nil && (up || in) {
			t.Fatalf("error %v with up=%v in=%v", err, up, in)
		}
	})
}

func FuzzParseHTTPExpect(f *testing.F) {
	for _, s := range []string{"", "200", "404 not.*found", "abc", "200 ("} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expect string) {
		code, _, err := parseHTTPExpect(expect, nil)
		if err == nil && (code < 100 || code > 599) {
			t.Fatalf("parseHTTPExpect(%q) = %d without error", expect, code)
		}
	})
}
