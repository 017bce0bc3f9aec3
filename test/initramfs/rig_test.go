package initramfs

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"netboot/initramfs"
	"netboot/initramfs/marker"
	"netboot/internal/testenv"
	"netboot/test/harness"
)

const (
	guestMAC  = "52:54:00:12:34:56"
	guestIP   = "10.66.0.2"
	apiPort   = "18080"
	ncPort    = "6666"
	hostName  = "node1"
	holderMsg = "owner 10.66.0.9:0/77 is not node1"
)

// kernelCache is where scripts/deps.d/60-initramfs-linux.sh unpacks the
// Debian kernels.
func kernelCache() string {
	if d := os.Getenv("NETBOOT_KERNEL_CACHE"); d != "" {
		return d
	}
	return "/var/cache/netboot/initramfs-linux"
}

// debianKernel returns vmlinuz and the modules dir for arch.
func debianKernel(t *testing.T, arch string) (vmlinuz, modules string) {
	t.Helper()
	dir := filepath.Join(kernelCache(), arch)
	kver, err := os.ReadFile(filepath.Join(dir, "kver"))
	if err != nil {
		testenv.Unavailable(t, fmt.Sprintf("Debian %s kernel not unpacked (scripts/deps.d/60-initramfs-linux.sh): %v", arch, err))
	}
	return filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "root/lib/modules", strings.TrimSpace(string(kver)))
}

// buildImage builds the host image for arch (base cached across runs by
// its input hash).
func buildImage(t *testing.T, arch, modules string, host initramfs.HostConfig) string {
	t.Helper()
	testenv.RequireTools(t, "go")
	cache := filepath.Join(os.TempDir(), "netboot-initramfs-test-cache")
	b, err := initramfs.New(initramfs.Config{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "initrd-"+arch+".img")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	if err := b.Image(context.Background(), f, initramfs.ImageSpec{Arch: arch, ModulesDir: modules, Host: host}); err != nil {
		t.Fatalf("build image: %v", err)
	}
	st, _ := f.Stat()
	t.Logf("image %s: %d bytes in %s", arch, st.Size(), time.Since(start).Round(time.Millisecond))
	return out
}

// collector receives netconsole datagrams and keeps the nbinit markers.
type collector struct {
	mu      sync.Mutex
	lines   []string
	markers []marker.Marker
	changed chan struct{}
}

func startCollector(t *testing.T, ns *harness.Netns) *collector {
	c := &collector{changed: make(chan struct{})}
	pc := ns.ListenPacket(t, "udp4", net.JoinHostPort(ns.Addr.String(), ncPort))
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			c.add(string(buf[:n]))
		}
	}()
	return c
}

func (c *collector) add(datagram string) {
	// Extended format: "<level>,<seq>,<usec>,<flags>;text\n", text with
	// non-printable bytes and '\' escaped as \xNN.
	text := datagram
	if i := strings.IndexByte(text, ';'); i >= 0 && strings.Count(text[:i], ",") >= 3 {
		text = text[i+1:]
	}
	text = unescapeExtended(strings.TrimRight(text, "\n"))
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, text)
	if m, err := marker.Parse(text); err == nil {
		c.markers = append(c.markers, m)
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

func unescapeExtended(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			var v byte
			if _, err := fmt.Sscanf(s[i+2:i+4], "%02x", &v); err == nil {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// waitMarker waits for a marker matching pred.
func (c *collector) waitMarker(ctx context.Context, what string, pred func(marker.Marker) bool) (marker.Marker, error) {
	for {
		c.mu.Lock()
		for _, m := range c.markers {
			if pred(m) {
				c.mu.Unlock()
				return m, nil
			}
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return marker.Marker{}, fmt.Errorf("no netconsole marker %s: %w", what, ctx.Err())
		case <-ch:
		}
	}
}

func (c *collector) dump() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.lines)
	return fmt.Sprintf("%d netconsole lines; last: %s", n, strings.Join(c.lines[max(0, n-15):], "\n"))
}

// refusingAPI is netbootd's host-bound API with a root/prepare that always
// refuses (the lock is held by another host).
type refusingAPI struct {
	mu       sync.Mutex
	stages   []map[string]any
	prepares int
}

func (a *refusingAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch r.Method + " " + r.URL.Path {
	case "POST /api/v1/hosts/" + hostName + "/stages":
		var s map[string]any
		if err := json.NewDecoder(r.Body).Decode(&s); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a.stages = append(a.stages, s)
		w.WriteHeader(http.StatusNoContent)
	case "POST /api/v1/hosts/" + hostName + "/root/prepare":
		a.prepares++
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		fmt.Fprintf(w, `{"error":"lock held by another client","reason":%q}`, holderMsg)
	default:
		http.NotFound(w, r)
	}
}

func (a *refusingAPI) stageNames() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, s := range a.stages {
		out = append(out, fmt.Sprintf("%v:%v", s["stage"], s["ok"]))
	}
	return out
}

// startPeers runs the API and dnsmasq (DHCP only) inside ns.
func startPeers(t *testing.T, ns *harness.Netns, dir string) *refusingAPI {
	t.Helper()
	testenv.RequireTools(t, "dnsmasq")
	api := startAPI(t, ns)
	ns.Start(t, filepath.Join(dir, "dnsmasq.log"), "dnsmasq", "-k", "--conf-file=/dev/null", "--port=0",
		"--interface="+ns.BridgeDev, "--bind-interfaces", "--except-interface=lo",
		"--dhcp-range=10.66.0.100,10.66.0.150,255.255.255.0,1h",
		"--dhcp-host="+guestMAC+","+guestIP, "--dhcp-leasefile="+filepath.Join(t.TempDir(), "leases"),
		"--log-dhcp", "--log-facility=-")
	return api
}

// startAPI serves the refusing API inside ns.
func startAPI(t *testing.T, ns *harness.Netns) *refusingAPI {
	t.Helper()
	api := &refusingAPI{}
	l := ns.Listen(t, "tcp4", net.JoinHostPort(ns.Addr.String(), apiPort))
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return api
}

// hostConfig points nbinit at the test's peers.
func hostConfig(ns *harness.Netns) initramfs.HostConfig {
	return initramfs.HostConfig{Host: hostName, Server: net.JoinHostPort(ns.Addr.String(), apiPort),
		Netconsole: net.JoinHostPort(ns.Addr.String(), ncPort), OnFailure: "halt", Deadline: "12s"}
}

// newNetns is a test namespace for this part.
func newNetns(t *testing.T) *harness.Netns {
	return harness.NewNetns(t, harness.NetnsConfig{Part: "nbinitrd", Bridge: netip.MustParsePrefix("10.66.0.1/24")})
}

// checkRefusalFlow asserts the acceptance chain on netconsole and the API.
func checkRefusalFlow(t *testing.T, ctx context.Context, c *collector, api *refusingAPI) {
	t.Helper()
	must := func(what string, pred func(marker.Marker) bool) marker.Marker {
		t.Helper()
		m, err := c.waitMarker(ctx, what, pred)
		if err != nil {
			t.Fatalf("%v\n%s\nAPI stages: %v", err, c.dump(), api.stageNames())
		}
		t.Logf("netconsole: %s", m)
		return m
	}
	net := must("network ok", func(m marker.Marker) bool { return m.Stage == "network" && m.OK() })
	if net.Attrs["ip"] != guestIP+"/24" || net.Attrs["netconsole"] == "" {
		t.Errorf("network marker %s: want ip %s/24 and netconsole on", net, guestIP)
	}
	must("root-prepare refusal (attempt 1)", func(m marker.Marker) bool {
		return m.Stage == "root-prepare" && m.Status == marker.StatusFailed && m.Attempt == 1 && strings.Contains(m.Message, holderMsg)
	})
	must("root-prepare retry (attempt 2)", func(m marker.Marker) bool {
		return m.Stage == "root-prepare" && m.Status == marker.StatusFailed && m.Attempt == 2
	})
	must("boot stopped (halt)", func(m marker.Marker) bool {
		return m.Stage == "root-prepare" && m.Attrs["action"] == "halt"
	})
	got := strings.Join(api.stageNames(), " ")
	for _, want := range []string{"init:true", "network:true", "root-prepare:false"} {
		if !strings.Contains(got, want) {
			t.Errorf("API stages %q lack %s", got, want)
		}
	}
}

// stillAlive checks that the guest did not panic (PID 1 exiting panics the
// kernel; with panic=1 and -no-reboot QEMU would then exit).
func stillAlive(t *testing.T, proc *harness.Proc, serial *harness.Serial, wait time.Duration) {
	t.Helper()
	select {
	case <-proc.Done():
		t.Fatalf("QEMU exited: the guest panicked or rebooted\n%s", serial.Tail(30))
	case <-time.After(wait):
	}
	for _, l := range serial.Lines() {
		if strings.Contains(l.Text, "Kernel panic") || strings.Contains(l.Text, "Attempted to kill init") {
			t.Fatalf("guest console: %s", l.Text)
		}
	}
}

// checkModules asserts that the init marker reports the image's modules
// loaded; only CPU-specific variants (crc32c_intel needs SSE4.2, which
// QEMU's TCG CPU lacks) may fail.
func checkModules(t *testing.T, line string) {
	t.Helper()
	m, err := marker.Parse(line)
	if err != nil {
		t.Fatalf("init marker %q: %v", line, err)
	}
	if n, _ := strconv.Atoi(m.Attrs["modules"]); n < 20 {
		t.Errorf("init marker reports %q modules loaded, want >= 20: %s", m.Attrs["modules"], m)
	}
	for _, f := range strings.Split(m.Attrs["modules_failed"], ",") {
		if f != "" && f != "crc32c_intel" {
			t.Errorf("module %s failed to load: %s", f, m)
		}
	}
	t.Logf("serial: %s", m)
}

func regexpMust(s string) *regexp.Regexp { return regexp.MustCompile(s) }
