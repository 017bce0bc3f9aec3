package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"netboot/internal/boot"
)

// TestRestartMidBootKeepsAttempt runs the real netbootd, reports nbinit
// stages through its API, restarts it in the middle of the boot and checks
// that the same attempt carries on to its outcome.
func TestRestartMidBootKeepsAttempt(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "netbootd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build netbootd: %v\n%s", err, out)
	}
	httpAddr := freeAddr(t, "tcp")
	cfg := fmt.Sprintf(`server:
  address: 127.0.0.1
  artifact_root: %s
  api_token: tok
tftp: {listen: "off"}
http: {listen: "%s"}
netconsole: {listen: "off"}
store: {path: %s}
dhcp: {mode: "off"}
classes:
  plain: {arch: amd64, firmware: uefi, deadlines: {root-mount: 10m}}
hosts:
  - {name: h1, mac: "02:00:00:00:00:01", ip: 127.0.0.1, class: plain}
`, t.TempDir(), httpAddr, filepath.Join(dir, "netboot.db"))
	cfgPath := filepath.Join(dir, "netbootd.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	base := "http://" + httpAddr
	stop := startDaemon(t, bin, cfgPath, base, filepath.Join(dir, "run1.log"))
	first := postStages(t, base, "init", "network", "root-prepare", "root-map")
	stop()

	stop = startDaemon(t, bin, cfgPath, base, filepath.Join(dir, "run2.log"))
	defer stop()
	var mid boot.Report
	getJSON(t, base+"/api/v1/hosts/h1/boots/latest", &mid)
	if mid.BootID != first || mid.Outcome != "in-progress" || mid.LastStage.String() != "root-map" {
		t.Fatalf("after restart: boot %d %s at %s, want boot %d in-progress at root-map", mid.BootID, mid.Outcome, mid.LastStage, first)
	}
	if again := postStages(t, base, "root-mount", "switch-root", "userspace"); again != first {
		t.Fatalf("stages after restart joined boot %d, want %d", again, first)
	}
	var done boot.Report
	getJSON(t, base+"/api/v1/hosts/h1/boots/latest?wait=30s", &done)
	if done.BootID != first || done.Outcome != "succeeded" || len(done.Stages) != 8 {
		t.Errorf("final: boot %d %s with %d stages, want boot %d succeeded with 8 (init … ready)", done.BootID, done.Outcome, len(done.Stages), first)
	}
}

func freeAddr(t *testing.T, network string) string {
	t.Helper()
	ln, err := net.Listen(network, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startDaemon starts netbootd and waits until its API answers; the
// returned func stops exactly that process (SIGTERM, then SIGKILL).
func startDaemon(t *testing.T, bin, cfg, base, logPath string) func() {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
	}
	t.Cleanup(stop)
	for i := 0; ; i++ {
		resp, err := http.Get(base + "/api/v1/hosts")
		if err == nil {
			resp.Body.Close()
			return stop
		}
		select {
		case <-done:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("netbootd exited:\n%s", log)
		case <-time.After(100 * time.Millisecond):
		}
		if i == 300 {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("netbootd never answered: %v\n%s", err, log)
		}
	}
}

// postStages reports ok stages for h1 as nbinit would (from its address)
// and returns the boot id they joined.
func postStages(t *testing.T, base string, stages ...string) int64 {
	t.Helper()
	var id int64
	for _, s := range stages {
		resp, err := http.Post(base+"/api/v1/hosts/h1/stages", "application/json", strings.NewReader(`{"stage":"`+s+`","ok":true}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var a struct {
			BootID int64 `json:"boot_id"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(body, &a) != nil {
			t.Fatalf("post stage %s: %d %s", s, resp.StatusCode, body)
		}
		if id != 0 && a.BootID != id {
			t.Fatalf("stage %s joined boot %d, the previous ones %d", s, a.BootID, id)
		}
		id = a.BootID
	}
	return id
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
