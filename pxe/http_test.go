package pxe

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"netboot/internal/config"
	"netboot/internal/event"
	"netboot/internal/event/eventtest"
	"netboot/internal/testenv"
)

// eventLog collects emitted events for assertions (HTTP and TFTP tests).
type eventLog struct{ eventtest.Recorder }

func (l *eventLog) last(t *testing.T) event.Event {
	t.Helper()
	evs := l.Events()
	if len(evs) == 0 {
		t.Fatal("no event emitted")
	}
	return evs[len(evs)-1]
}

type staticInitrd string

func (s staticInitrd) InitrdPath(context.Context, *config.Host) (string, error) {
	return string(s), nil
}

type httpFixture struct {
	srv    *httptest.Server
	events *eventLog
	reg    *prometheus.Registry
	kernel []byte
	dir    string
}

// newHTTPFixture serves a temporary artifact tree on 127.0.0.1 with one
// host (udoo) whose inventory address is 127.0.0.1.
func newHTTPFixture(t *testing.T) *httpFixture {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	kernel := make([]byte, 3<<20+17)
	if _, err := rand.Read(kernel); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"x86/vmlinuz":        kernel,
		"x86/initrd.img":     []byte("initrd\n"),
		"ipxe/undionly.kpxe": []byte("kpxe\n"),
		"../secret":          []byte("secret\n"),
		"nbinit.cpio.gz":     []byte("per-host image\n"),
	}
	for name, data := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(dir, "secret"), filepath.Join(root, "x86", "escape")); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("test.yaml", dir, []byte(`
server: {address: 127.0.0.1, artifact_root: root}
classes:
  x86: {arch: amd64, firmware: bios, kernel: vmlinuz, initrd: initrd.img, cmdline: "console=ttyS0 nb.host={{.name}}"}
  nb: {arch: amd64, dir: x86, kernel: vmlinuz, initrd: nbinit}
hosts:
  - {name: udoo, mac: "00:c0:08:9d:11:22", ip: 127.0.0.1, class: x86}
  - {name: vm1, mac: "52:54:00:12:34:56", class: nb}
`))
	if err != nil {
		t.Fatal(err)
	}
	arts, err := NewArtifacts(cfg, nil, ArtifactsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { arts.Close() })
	f := &httpFixture{events: &eventLog{}, reg: prometheus.NewRegistry(), kernel: kernel, dir: dir}
	inv := NewInventory(cfg)
	h, err := NewHTTP(HTTPConfig{BaseURL: "http://127.0.0.1:8080"}, HTTPDeps{
		Sink: f.events, Registerer: f.reg, Inventory: inv, Artifacts: arts, Hosts: NewLeases(inv),
		Initrd: staticInitrd(filepath.Join(root, "nbinit.cpio.gz")),
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/boot/", h)
	mux.Handle("/files/", h)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *httpFixture) get(t *testing.T, path string, hdr map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return resp.StatusCode, body
}

func TestHTTPServes(t *testing.T) {
	f := newHTTPFixture(t)
	tests := []struct {
		name      string
		path      string
		rng       string
		status    int
		body      []byte // nil: not checked
		kind      event.Kind
		host      string
		stage     event.Stage
		role      string
		bodyMatch string
	}{
		{name: "kernel whole", path: "/files/x86/vmlinuz", status: 200, body: f.kernel, kind: event.FileFetched, host: "udoo", stage: event.StageKernel, role: "kernel"},
		{name: "kernel range", path: "/files/x86/vmlinuz", rng: "bytes=1048570-2097200", status: 206, body: f.kernel[1048570:2097201], kind: event.FileFetched, host: "udoo", stage: event.StageNone, role: "kernel"},
		{name: "initrd", path: "/files/x86/initrd.img", status: 200, body: []byte("initrd\n"), kind: event.FileFetched, host: "udoo", stage: event.StageInitramfs, role: "initramfs"},
		{name: "ipxe binary", path: "/files/ipxe/undionly.kpxe", status: 200, body: []byte("kpxe\n"), kind: event.FileFetched, host: "udoo", stage: event.StageFirmware, role: "firmware"},
		{name: "script", path: "/boot/udoo.ipxe", status: 200, bodyMatch: "kernel http://127.0.0.1:8080/files/x86/vmlinuz initrd=initrd.img console=ttyS0 nb.host=udoo", kind: event.FileFetched, host: "udoo", stage: event.StageFirmware, role: "config"},
		{name: "script of unknown host", path: "/boot/nosuch.ipxe", status: 404, kind: event.FileFailed, host: "unknown:nosuch", role: "config"},
		{name: "per-host initrd", path: "/boot/vm1/initrd", status: 200, body: []byte("per-host image\n"), kind: event.FileFetched, host: "vm1", stage: event.StageInitramfs, role: "initramfs"},
		{name: "missing kernel fails the stage", path: "/files/x86/vmlinuz-6.99", status: 404, kind: event.FileFailed, host: "udoo", stage: event.StageKernel, role: "kernel"},
		{name: "missing file", path: "/files/x86/nosuch", status: 404, kind: event.FileFailed, host: "udoo", role: "other"},
		{name: "symlink out of the root", path: "/files/x86/escape", status: 403, kind: event.FileFailed, host: "udoo", role: "other"},
		{name: "encoded traversal", path: "/files/x86/..%2f..%2fsecret", status: 403, kind: event.FileFailed, host: "udoo", role: "other"},
		{name: "backslash", path: "/files/x86%5c..%5csecret", status: 403, kind: event.FileFailed, host: "udoo", role: "other"},
		{name: "bad range", path: "/files/x86/initrd.img", rng: "bytes=100-200", status: 416, kind: event.FileFailed, host: "udoo", role: "initramfs"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.rng != "" {
				hdr["Range"] = tc.rng
			}
			before := len(f.events.Events())
			status, body := f.get(t, tc.path, hdr)
			if status != tc.status {
				t.Fatalf("GET %s: status %d, want %d (body %.200q)", tc.path, status, tc.status, body)
			}
			if tc.body != nil && !bytes.Equal(body, tc.body) {
				t.Fatalf("GET %s: body of %d bytes differs from the file's %d bytes", tc.path, len(body), len(tc.body))
			}
			if tc.bodyMatch != "" && !strings.Contains(string(body), tc.bodyMatch) {
				t.Fatalf("GET %s: body %q lacks %q", tc.path, body, tc.bodyMatch)
			}
			if bytes.Equal(body, []byte("secret\n")) {
				t.Fatalf("GET %s leaked a file outside the root", tc.path)
			}
			// The event is emitted once the handler returns, which may be
			// just after the client has the whole answer.
			evs := f.events.waitFor(t, before+1)
			ev := evs[len(evs)-1]
			if ev.Kind != tc.kind || ev.Host != tc.host || ev.Stage != tc.stage || ev.Attr("role") != tc.role || ev.Attr("proto") != "http" {
				t.Fatalf("event = %+v; want kind %s host %s stage %q role %s", ev, tc.kind, tc.host, tc.stage, tc.role)
			}
			if tc.kind == event.FileFetched && ev.Attr("bytes") != fmt.Sprint(len(body)) {
				t.Fatalf("event bytes = %s, want %d", ev.Attr("bytes"), len(body))
			}
		})
	}
	m := NewFileMetrics(f.reg) // the registered collectors
	for result, want := range map[string]float64{"not-found": 3, "refused": 3, "ok": 5, "partial": 1, "client-error": 1} {
		if got := testutil.ToFloat64(m.Transfers.WithLabelValues("http", result)); got != want {
			t.Errorf("netboot_file_transfers_total{http,%s} = %v, want %v", result, got, want)
		}
	}
}

// TestHTTPCurlRange fetches with the real curl client, whole and by ranges,
// and checks the bytes are identical to the file.
func TestHTTPCurlRange(t *testing.T) {
	testenv.RequireTools(t, "curl")
	f := newHTTPFixture(t)
	n := len(f.kernel)
	tests := []struct {
		name string
		rng  string
		want []byte
	}{
		{"whole", "", f.kernel},
		{"first block", "0-511", f.kernel[:512]},
		{"middle", "1000000-2000000", f.kernel[1000000:2000001]},
		{"suffix", fmt.Sprintf("%d-", n-100), f.kernel[n-100:]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			args := []string{"-sS", "--fail", "-o", out}
			if tc.rng != "" {
				args = append(args, "-r", tc.rng)
			}
			args = append(args, f.srv.URL+"/files/x86/vmlinuz")
			if b, err := exec.Command("curl", args...).CombinedOutput(); err != nil {
				t.Fatalf("curl %v: %v: %s", args, err, b)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("curl got %d bytes, want %d identical bytes", len(got), len(tc.want))
			}
		})
	}
}

// TestHTTPUnknownBootScript: with dhcp.unknown: boot, an unknown client's
// script (named by MAC, as DHCP hands it out) renders the default class;
// without a default class, or with a malformed name, it is a 404.
func TestHTTPUnknownBootScript(t *testing.T) {
	cfg, err := config.Parse("test.yaml", t.TempDir(), []byte(ipxeTestConfig))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, defaultClass, path string
		status                   int
		host                     string
	}{
		{"default class", "x86", "/boot/mac-52-54-00-de-ad-00.ipxe", 200, "unknown:52:54:00:de:ad:00"},
		{"no default class", "", "/boot/mac-52-54-00-de-ad-00.ipxe", 404, "unknown:mac-52-54-00-de-ad-00"},
		{"malformed mac", "x86", "/boot/mac-52-54-00-de-ad.ipxe", 404, "unknown:mac-52-54-00-de-ad"},
		{"upper-case mac", "x86", "/boot/mac-52-54-00-DE-AD-00.ipxe", 404, "unknown:mac-52-54-00-DE-AD-00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs := &eventLog{}
			h, err := NewHTTP(HTTPConfig{BaseURL: "http://10.99.0.1:8080", DefaultClass: tc.defaultClass},
				HTTPDeps{Inventory: NewInventory(cfg), Sink: evs})
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
			if rec.Code != tc.status {
				t.Fatalf("GET %s = %d, want %d: %s", tc.path, rec.Code, tc.status, rec.Body)
			}
			if tc.status == 200 && !strings.Contains(rec.Body.String(), "kernel http://10.99.0.1:8080/files/x86/vmlinuz") {
				t.Fatalf("script does not boot the default class: %s", rec.Body)
			}
			if ev := evs.last(t); ev.Host != tc.host {
				t.Fatalf("event host = %q, want %q", ev.Host, tc.host)
			}
		})
	}
}

// FuzzParseUnknownHostName: whatever /boot/{name}.ipxe carries, a name
// that parses is exactly the canonical name of the MAC it yields.
func FuzzParseUnknownHostName(f *testing.F) {
	for _, s := range []string{"mac-52-54-00-de-ad-00", "mac-52-54-00-DE-AD-00", "mac-", "mac-52:54:00:de:ad:00", "udoo", "mac-00-00-00-00-00-00-00-00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		mac, ok := parseUnknownHostName(name)
		if !ok {
			return
		}
		if len(mac) != 6 || UnknownHostName(mac) != name {
			t.Fatalf("parseUnknownHostName(%q) = %v, which is named %q", name, mac, UnknownHostName(mac))
		}
	})
}
