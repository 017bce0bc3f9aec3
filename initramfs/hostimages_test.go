package initramfs

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"netboot/internal/config"
)

func TestHostImages(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "prebuilt-base.cpio.gz")
	writeTestBase(t, base, 4096)
	b, err := New(Config{CacheDir: filepath.Join(dir, "cache"), Bases: map[string]string{"amd64": base, "arm64": base}})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	hi, err := NewHostImages(HostImagesConfig{Server: "10.0.0.1:8080", Netconsole: "10.0.0.1:6666",
		Modules: map[string]string{"amd64": "testdata/modules"}, ModuleNames: []string{"rbd"}, OnFailure: "reboot"},
		b, nil, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	node1 := &config.Host{Name: "node1", Arch: "amd64"}
	p1, err := hi.InitrdPath(ctx, node1)
	if err != nil {
		t.Fatal(err)
	}
	again, err := hi.InitrdPath(ctx, node1)
	if err != nil || again != p1 {
		t.Fatalf("second request: %s, %v; want cached %s", again, err, p1)
	}
	pi, err := hi.InitrdPath(ctx, &config.Host{Name: "pi1", Arch: "arm64"})
	if err != nil || pi == p1 {
		t.Fatalf("pi1 image %s, %v", pi, err)
	}
	data, _ := os.ReadFile(p1)
	files := extract(t, data)
	var hc HostConfig
	if err := json.Unmarshal(files["etc/nbinit/config.json"], &hc); err != nil {
		t.Fatal(err)
	}
	if hc != (HostConfig{Host: "node1", Server: "10.0.0.1:8080", Netconsole: "10.0.0.1:6666", OnFailure: "reboot"}) {
		t.Errorf("config.json = %+v", hc)
	}
	if !strings.Contains(string(files["etc/nbinit/modules"]), "rbd.ko") {
		t.Errorf("amd64 image lacks the modules list")
	}
	if _, ok := extract(t, mustRead(t, pi))["etc/nbinit/modules"]; ok {
		t.Errorf("arm64 image has modules though none are configured for arm64")
	}
	if _, err := hi.InitrdPath(ctx, &config.Host{Name: "x", Arch: "riscv64"}); err == nil {
		t.Error("unsupported arch accepted")
	}
	for result, want := range map[string]float64{"assembled": 2, "cached": 1, "failed": 1} {
		if got := testutil.ToFloat64(hi.assembled.WithLabelValues(result)); got != want {
			t.Errorf("metric %s = %v, want %v", result, got, want)
		}
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
