package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"netboot/initramfs/marker"
	"netboot/internal/clock"
)

// fakeKernel is System and Network over a temp dir.
type fakeKernel struct {
	t    *testing.T
	root Root

	mu        sync.Mutex
	mounts    []string
	modules   []string
	switched  string
	shells    int
	reboots   int
	unmaps    int
	failMount map[string]error // by target
	failMod   map[string]error // by base name
	mapErr    error
	noDevNode bool
	switchErr error

	carrier bool
	dhcpErr error
	lease   Lease
}

func (k *fakeKernel) Mount(source, target, fstype string, _ uintptr, data string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failMount[target]; err != nil {
		return err
	}
	k.mounts = append(k.mounts, fstype+":"+source+"->"+strings.TrimPrefix(target, k.root.Dev+"/..")+":"+data)
	if target == k.root.NewRoot {
		if err := os.MkdirAll(filepath.Join(target, "sbin"), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(target, "sbin/init"), nil, 0o755)
	}
	return nil
}

func (k *fakeKernel) LoadModule(path, params string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	name := strings.TrimSuffix(filepath.Base(path), ".ko")
	if err := k.failMod[name]; err != nil {
		return err
	}
	if _, err := os.Stat(path); err != nil {
		return err
	}
	k.modules = append(k.modules, name+params)
	switch name {
	case "configfs":
		return os.MkdirAll(k.root.ConfigFS, 0o755)
	case "netconsole":
		return os.MkdirAll(filepath.Join(k.root.ConfigFS, "netconsole"), 0o755)
	}
	return nil
}

func (k *fakeKernel) SwitchRoot(newRoot, init string) error {
	k.switched = newRoot + " " + init
	return k.switchErr
}

func (k *fakeKernel) WriteSysfs(path string, data []byte) error {
	if strings.HasSuffix(path, "add_single_major") {
		return k.rbdAdd(string(data))
	}
	if strings.HasSuffix(path, "remove_single_major") {
		k.unmaps++
		return os.RemoveAll(filepath.Join(k.root.Sys, "bus/rbd/devices", string(data)))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// rbdAdd plays the kernel rbd driver: a new device dir and /dev node.
func (k *fakeKernel) rbdAdd(spec string) error {
	if k.mapErr != nil {
		return k.mapErr
	}
	if err := os.WriteFile(filepath.Join(k.root.Sys, "bus/rbd/last_spec"), []byte(spec), 0o644); err != nil {
		return err
	}
	dev := filepath.Join(k.root.Sys, "bus/rbd/devices/0")
	if err := os.MkdirAll(dev, 0o755); err != nil {
		return err
	}
	os.WriteFile(filepath.Join(dev, "client_addr"), []byte("10.0.0.2:0/1234\n"), 0o644)
	os.WriteFile(filepath.Join(dev, "client_id"), []byte("client4130\n"), 0o644)
	if k.noDevNode {
		return nil
	}
	return os.WriteFile(filepath.Join(k.root.Dev, "rbd0"), nil, 0o644)
}

func (k *fakeKernel) Reboot() error { k.reboots++; return nil }

func (k *fakeKernel) RunShell(context.Context, string) error {
	k.shells++
	return errors.New("EOF on console")
}

func (k *fakeKernel) LinkUp(ifname string) error {
	v := "0"
	if k.carrier {
		v = "1"
	}
	return os.WriteFile(filepath.Join(k.root.Sys, "class/net", ifname, "carrier"), []byte(v), 0o644)
}

func (k *fakeKernel) DHCP(context.Context, string) (Lease, error) {
	if k.dhcpErr != nil {
		return Lease{}, k.dhcpErr
	}
	return k.lease, nil
}

func (k *fakeKernel) NeighborMAC(_ context.Context, ifname, ip string) (string, error) {
	if ip == "127.0.0.1" {
		return "02:00:00:00:00:01", nil
	}
	return "", errors.New("no ARP answer")
}

// fakeAPI is netbootd's host-bound endpoints.
type fakeAPI struct {
	mu       sync.Mutex
	stages   []StageReport
	mapped   []Mapped
	prepares int
	refuse   int // answer 409 to this many prepare calls (-1: always)
	badJSON  bool
	nested   bool // answer in netbootd's rbd.PrepareAnswer shape
}

func (a *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch r.URL.Path {
	case "/api/v1/hosts/node1/stages":
		var s StageReport
		json.NewDecoder(r.Body).Decode(&s)
		a.stages = append(a.stages, s)
	case "/api/v1/hosts/node1/root/prepare":
		a.prepares++
		if a.refuse < 0 || a.prepares <= a.refuse {
			w.WriteHeader(http.StatusConflict)
			w.Write([]byte(`{"error":"lock held by another host","reason":"owner 10.0.0.9:0/77 is not node1"}`))
			return
		}
		if a.badJSON {
			w.Write([]byte(`{"pool":"rbd"}`))
			return
		}
		if a.nested {
			w.Write([]byte(`{"host":"node1","boot_id":7,"map":{"monitors":["10.0.0.1:6789","10.0.0.3:6789"],"pool":"rbd","image":"node1-root","user":"nb","key":"QUJD==","options":["ms_mode=prefer-crc"]},"result":{"steps":[{"kind":"blocklist"}]}}`))
			return
		}
		w.Write([]byte(`{"monitors":["10.0.0.1:6789","10.0.0.3:6789"],"pool":"rbd","image":"node1-root","user":"nb","key":"QUJD==","map_options":"ms_mode=prefer-crc","actions":[{"kind":"blocklist"}]}`))
	case "/api/v1/hosts/node1/root/mapped":
		var m Mapped
		json.NewDecoder(r.Body).Decode(&m)
		a.mapped = append(a.mapped, m)
	default:
		http.NotFound(w, r)
	}
}

type rig struct {
	n     *Init
	k     *fakeKernel
	api   *fakeAPI
	clock *clock.Fake
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	root := Root{Dev: filepath.Join(dir, "dev"), Proc: filepath.Join(dir, "proc"), Sys: filepath.Join(dir, "sys"),
		Run: filepath.Join(dir, "run"), ConfigFS: filepath.Join(dir, "sys/kernel/config"),
		ConfigFile: filepath.Join(dir, "etc/nbinit/config.json"), ModuleList: filepath.Join(dir, "etc/nbinit/modules"),
		NewRoot: filepath.Join(dir, "newroot")}
	api := &fakeAPI{}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	server := strings.TrimPrefix(srv.URL, "http://")
	mustWrite(t, filepath.Join(root.Proc, "cmdline"), "console=ttyS0 nb.host=node1 nb.server="+server+" nb.netconsole=127.0.0.1:6666 nb.deadline=90s\n")
	mustWrite(t, filepath.Join(root.Proc, "sys/kernel/printk"), "4 4 1 7")
	mustWrite(t, filepath.Join(root.Dev, "kmsg"), "")
	mustWrite(t, filepath.Join(root.Sys, "class/net/eth0/device/vendor"), "0x1af4")
	mustWrite(t, filepath.Join(root.Sys, "class/net/lo/carrier"), "1")
	mustWrite(t, filepath.Join(root.Sys, "bus/rbd/add_single_major"), "")
	os.MkdirAll(filepath.Join(root.Sys, "bus/rbd/devices"), 0o755)
	modDir := filepath.Join(dir, "lib/modules/nbinit")
	for _, m := range []string{"virtio_net", "configfs", "netconsole", "libceph", "rbd"} {
		mustWrite(t, filepath.Join(modDir, m+".ko"), "ELF")
	}
	mustWrite(t, root.ModuleList, "# load order\n"+strings.Join([]string{
		modDir + "/virtio_net.ko", modDir + "/configfs.ko", modDir + "/netconsole.ko", modDir + "/libceph.ko", modDir + "/rbd.ko"}, "\n")+"\n")
	mustWrite(t, root.ConfigFile, `{"on_failure":"halt","init":"/sbin/init"}`)
	k := &fakeKernel{t: t, root: root, carrier: true,
		lease: Lease{Interface: "eth0", IP: "127.0.0.2/8", Router: "127.0.0.254", ServerID: "127.0.0.1"}}
	fc := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	n := &Init{Root: root, Sys: k, Net: k, Clock: fc,
		Sleep: func(_ context.Context, d time.Duration) error { fc.Advance(d); return nil }}
	n.cfg.setDefaults()
	return &rig{n: n, k: k, api: api, clock: fc}
}

func mustWrite(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// markers returns the parsed markers written to the fake /dev/kmsg.
func (r *rig) markers(t *testing.T) []marker.Marker {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.n.Root.Dev, "kmsg"))
	if err != nil {
		t.Fatal(err)
	}
	var out []marker.Marker
	for _, line := range strings.Split(string(b), "\n") {
		if m, err := marker.Parse(line); err == nil {
			out = append(out, m)
		} else if !errors.Is(err, marker.ErrNoMarker) {
			t.Errorf("bad marker line %q: %v", line, err)
		}
	}
	return out
}

func TestRunHappyPath(t *testing.T) {
	for _, nested := range []bool{false, true} {
		t.Run(fmt.Sprintf("nested=%v", nested), func(t *testing.T) { testHappyPath(t, nested) })
	}
}

func testHappyPath(t *testing.T, nested bool) {
	r := newRig(t)
	r.api.nested = nested
	err := r.n.Run(context.Background())
	var se *stageError
	if !errors.As(err, &se) || se.Stage != "switch-root" {
		t.Fatalf("Run = %v, want the fake switch_root's 'returned without exec'", err)
	}
	var got []string
	for _, m := range r.markers(t) {
		got = append(got, m.Stage+"="+m.Status)
	}
	want := "init=ok network=ok root-prepare=ok root-map=ok root-mount=ok switch-root=ok switch-root=failed"
	if strings.Join(got, " ") != want {
		t.Errorf("markers = %v, want %s", got, want)
	}
	var posted []string
	for _, s := range r.api.stages {
		posted = append(posted, s.Stage)
	}
	if strings.Join(posted, " ") != "init network root-prepare root-map root-mount switch-root switch-root" {
		t.Errorf("API stages = %v (init must be queued and flushed after network)", posted)
	}
	if r.k.switched != r.n.Root.NewRoot+" /sbin/init" {
		t.Errorf("SwitchRoot(%q)", r.k.switched)
	}
	if len(r.k.modules) != 5 {
		t.Errorf("modules loaded = %v", r.k.modules)
	}
	spec := readTrim(filepath.Join(r.n.Root.Sys, "bus/rbd/last_spec"))
	if spec != "10.0.0.1:6789,10.0.0.3:6789 name=nb,secret=QUJD==,ms_mode=prefer-crc rbd node1-root -" {
		t.Errorf("map spec = %q", spec)
	}
	if len(r.api.mapped) != 1 || r.api.mapped[0] != (Mapped{ClientAddr: "10.0.0.2:0/1234", ClientID: "client4130", Device: "/dev/rbd0"}) {
		t.Errorf("mapped = %+v", r.api.mapped)
	}
	// netconsole is loaded after the lease with an extended target as its
	// parameter (so the kernel replays its log), not at init, not configfs.
	if want := "netconsolenetconsole=+6665@127.0.0.2/eth0,6666@127.0.0.1/02:00:00:00:00:01"; !containsString(r.k.modules, want) {
		t.Errorf("modules loaded = %v, want %q after the lease", r.k.modules, want)
	}
	if _, err := os.Stat(filepath.Join(r.n.Root.ConfigFS, "netconsole/nbinit")); err == nil {
		t.Error("a configfs target was created as well: the collector would get every line twice")
	}
	if got := readTrim(filepath.Join(r.n.Root.Proc, "sys/kernel/printk")); got != "8" {
		t.Errorf("console loglevel = %q, want 8", got)
	}
	for _, m := range r.markers(t) {
		if strings.Contains(m.String(), "QUJD") {
			t.Errorf("secret leaked into marker %q", m)
		}
	}
}

func TestRunFailures(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(*rig)
		stage    string
		cause    string
		minTries int
	}{
		{"no carrier", func(r *rig) { r.k.carrier = false }, "network", "no carrier on eth0", 2},
		{"dhcp timeout", func(r *rig) { r.k.dhcpErr = errors.New("no DHCP offer") }, "network", "no DHCP offer", 3},
		{"prepare refused", func(r *rig) { r.api.refuse = -1 }, "root-prepare", "owner 10.0.0.9:0/77 is not node1", 3},
		{"prepare incomplete", func(r *rig) { r.api.badJSON = true }, "root-prepare", "lacks", 3},
		{"map write fails", func(r *rig) { r.k.mapErr = errors.New("connection timed out") }, "root-map", "connection timed out", 3},
		{"no device node", func(r *rig) { r.k.noDevNode = true }, "root-map", "did not appear", 1},
		{"mount fails", func(r *rig) { r.k.failMount = map[string]error{r.n.Root.NewRoot: errors.New("bad superblock")} }, "root-mount", "bad superblock", 3},
		{"init missing", func(r *rig) { mustWrite(t, r.n.Root.ConfigFile, `{"init":"/nope"}`) }, "root-mount", "init /nope not found", 3},
		{"switch_root fails", func(r *rig) { r.k.switchErr = errors.New("EINVAL") }, "switch-root", "EINVAL", 1},
		{"devtmpfs fails", func(r *rig) { r.k.failMount = map[string]error{r.n.Root.Dev: errors.New("ENODEV")} }, "init", "ENODEV", 1},
		{"bad config", func(r *rig) { mustWrite(t, r.n.Root.ConfigFile, `{"on_failure":"explode"}`) }, "init", "on_failure", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			tt.setup(r)
			err := r.n.Run(context.Background())
			var se *stageError
			if !errors.As(err, &se) || se.Stage != tt.stage || !strings.Contains(err.Error(), tt.cause) {
				t.Fatalf("Run = %v, want a %s failure containing %q", err, tt.stage, tt.cause)
			}
			tries := 0
			for _, m := range r.markers(t) {
				if m.Stage == tt.stage && m.Status == marker.StatusFailed {
					tries++
					if !strings.Contains(m.Message, tt.cause) {
						t.Errorf("failed marker %q lacks the cause %q", m, tt.cause)
					}
				}
			}
			if tries < tt.minTries {
				t.Errorf("%d failed %s markers, want >= %d (retries with backoff)", tries, tt.stage, tt.minTries)
			}
			if tt.stage != "init" && tt.stage != "network" {
				if n := countFailedPosts(r.api, tt.stage); n < 1 {
					t.Errorf("no failed %s stage posted to the API", tt.stage)
				}
			}
		})
	}
}

func countFailedPosts(a *fakeAPI, stage string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, s := range a.stages {
		if s.Stage == stage && !s.OK {
			n++
		}
	}
	return n
}

func TestRetryRecovers(t *testing.T) {
	r := newRig(t)
	r.api.refuse = 2
	start := r.clock.Now()
	err := r.n.Run(context.Background())
	var se *stageError
	if !errors.As(err, &se) || se.Stage != "switch-root" {
		t.Fatalf("Run = %v, want to reach switch-root", err)
	}
	if r.api.prepares != 3 {
		t.Errorf("prepare calls = %d, want 3", r.api.prepares)
	}
	if waited := r.clock.Now().Sub(start); waited < 3*time.Second {
		t.Errorf("backoff waited %s, want >= 1s+2s", waited)
	}
}

func TestFailKeepsPID1(t *testing.T) {
	tests := []struct {
		action       string
		shells, boot int
	}{
		{"shell", 3, 0},
		{"reboot", 0, 3},
		{"halt", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.action, func(t *testing.T) {
			r := newRig(t)
			r.n.cfg.OnFailure = tt.action
			ctx, cancel := context.WithCancel(context.Background())
			loops := 0
			r.n.Sleep = func(context.Context, time.Duration) error {
				loops++
				if loops == 3 {
					cancel()
					return context.Canceled
				}
				return nil
			}
			r.n.Fail(ctx, &stageError{Stage: "root-prepare", Err: errors.New("refused")})
			if r.k.shells != tt.shells || r.k.reboots != tt.boot {
				t.Errorf("shells=%d reboots=%d, want %d/%d", r.k.shells, r.k.reboots, tt.shells, tt.boot)
			}
			ms := r.markers(t)
			if len(ms) == 0 || ms[0].Stage != "root-prepare" || ms[0].Attrs["action"] != tt.action {
				t.Errorf("final marker = %+v", ms)
			}
		})
	}
}

// TestNetconsoleFallsBackToConfigfs: when netconsole is already loaded
// (built in, or loaded earlier) the target is made through configfs.
func TestNetconsoleFallsBackToConfigfs(t *testing.T) {
	r := newRig(t)
	r.k.failMod = map[string]error{"netconsole": os.ErrExist}
	if err := os.MkdirAll(filepath.Join(r.n.Root.ConfigFS, "netconsole"), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = r.n.Run(context.Background())
	nc := filepath.Join(r.n.Root.ConfigFS, "netconsole/nbinit")
	for f, want := range map[string]string{"dev_name": "eth0", "local_ip": "127.0.0.2", "remote_ip": "127.0.0.1",
		"remote_port": "6666", "remote_mac": "02:00:00:00:00:01", "extended": "1", "enabled": "1"} {
		if got := readTrim(filepath.Join(nc, f)); got != want {
			t.Errorf("netconsole %s = %q, want %q", f, got, want)
		}
	}
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestModuleFailuresReported(t *testing.T) {
	r := newRig(t)
	r.k.failMod = map[string]error{"virtio_net": errors.New("no such device")}
	r.n.Run(context.Background())
	ms := r.markers(t)
	if len(ms) == 0 || ms[0].Stage != "init" || !ms[0].OK() || ms[0].Attrs["modules_failed"] != "virtio_net" || ms[0].Attrs["modules"] != "4" {
		t.Errorf("init marker = %+v, want ok with modules=4 modules_failed=virtio_net", ms)
	}
	if got := moduleName("/lib/modules/nbinit/20-crc32c-intel.ko.xz"); got != "crc32c-intel" {
		t.Errorf("moduleName = %q", got)
	}
}

func TestReadResponse(t *testing.T) {
	tests := []struct {
		name, in string
		status   int
		body     string
		wantErr  string
	}{
		{"length", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}", 200, "{}", ""},
		{"until eof", "HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\n\r\n{\"error\":\"x\"}", 409, `{"error":"x"}`, ""},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 0, "", "chunked"},
		{"garbage", "SSH-2.0-OpenSSH\r\n", 0, "", "bad status line"},
		{"short body", "HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\n{}", 0, "", "read body"},
		{"huge", "HTTP/1.0 200 OK\r\nContent-Length: 99999999\r\n\r\n", 0, "", "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, err := readResponse(bufio.NewReader(strings.NewReader(tt.in)))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || status != tt.status || string(body) != tt.body {
				t.Errorf("= %d %q %v", status, body, err)
			}
		})
	}
}

func FuzzReadResponse(f *testing.F) {
	f.Add("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}")
	f.Add("HTTP/1.1 503 x\r\n\r\nbody")
	f.Add("HTTP/1.1 200\r\nContent-Length: -1\r\n\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		status, body, err := readResponse(bufio.NewReader(strings.NewReader(in)))
		if err == nil && (status < 100 || len(body) > maxAnswer) {
			t.Fatalf("accepted status %d body %d", status, len(body))
		}
	})
}
