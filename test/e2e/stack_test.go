package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"netboot/initramfs"
	"netboot/internal/boot"
	"netboot/internal/testenv"
	"netboot/test/cephlab"
	"netboot/test/harness"
)

const (
	hostName  = "vm1"
	hostMAC   = "52:54:00:e2:e0:01"
	hostIP    = "10.66.0.2"
	otherIP   = "10.66.0.9" // the "other host" that holds the image in scenario 3
	serverIP  = "10.66.0.1"
	httpPort  = "8080"
	apiToken  = "e2e-token"
	poolName  = "rbd"
	imageName = "vm1-root"
	smokePort = "8000"
)

// stack is everything one e2e run shares: the namespace, Ceph, the root
// image, netbootd and the built CLI.
type stack struct {
	t        *testing.T
	dir      string // artifacts
	ns       *harness.Netns
	ceph     *cephlab.Cluster
	kernel   harness.KernelInfo
	ctlPath  string // netbootctl binary
	netbootd *harness.Proc
	api      *http.Client
	timings  *timingTable
	rootImg  string // the ext4 file imported as the root image
	// handover is reset → first write of the hard-reset scenario.
	handover time.Duration
}

// E2EEnv must be "1" for the suite to run (`make e2e` sets it): it boots
// six VMs and takes minutes, so `go test ./...` leaves it out.
const E2EEnv = "NETBOOT_E2E"

func newStack(t *testing.T) *stack {
	t.Helper()
	testenv.Short(t)
	if os.Getenv(E2EEnv) != "1" {
		t.Skipf("end-to-end suite: set %s=1 (make e2e)", E2EEnv)
	}
	harness.RequireNetns(t)
	harness.RequireQEMU(t)
	testenv.RequireTools(t, "mkfs.ext4", "busybox", "go")
	testenv.RequireTools(t, cephlab.Tools...)
	s := &stack{t: t, dir: harness.ArtifactDir(t), kernel: harness.Kernel(t, "amd64"), timings: newTimingTable()}
	t.Cleanup(func() { s.timings.write(t, filepath.Join(s.dir, "timings.md")) })
	s.ns = harness.NewNetns(t, harness.NetnsConfig{Part: "nbe2e", Bridge: netip.MustParsePrefix(serverIP + "/24")})
	s.api = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return s.ns.Dial(ctx, network, addr)
		},
	}}
	var bins map[string]string
	step(t, "go build", func() { bins = buildBinaries(t, "netbootd", "netbootctl") })
	s.ctlPath = bins["netbootctl"]
	step(t, "ceph", func() {
		s.ceph = cephlab.Start(t, cephlab.Config{NetNS: s.ns.Name, IP: serverIP, Dir: filepath.Join(s.dir, "ceph")})
	})
	step(t, "root image", func() { s.makeRootImage() })
	root := filepath.Join(t.TempDir(), "artifacts")
	step(t, "initramfs", func() { s.makeArtifacts(root) })
	cfgPath := filepath.Join(s.dir, "netbootd.yaml")
	if err := os.WriteFile(cfgPath, []byte(s.daemonConfig(root)), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(s.dir, "netbootd.log")
	s.netbootd = s.ns.Start(t, logPath, bins["netbootd"], "--config", cfgPath)
	s.waitAPI()
	return s
}

// step runs one setup step and logs its duration.
func step(t *testing.T, name string, f func()) {
	t.Helper()
	start := time.Now()
	f()
	t.Logf("setup %s: %.1fs", name, time.Since(start).Seconds())
}

// buildBinaries compiles the named commands of cmd/ into a temp dir.
func buildBinaries(t *testing.T, names ...string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out := map[string]string{}
	for _, n := range names {
		bin := filepath.Join(dir, n)
		cmd := exec.Command(gobin, "build", "-tags", cephlab.CephTags(), "-o", bin, "netboot/cmd/"+n)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v: %s", n, err, b)
		}
		out[n] = bin
	}
	return out
}

// rootInit is the RBD root's /sbin/init: it says "userspace up" on
// /dev/kmsg (serial and netconsole), counts boots on the root image, serves
// the smoke check's HTTP page, and reports the userspace stage to netbootd.
const rootInit = `#!/bin/sh
export PATH=/bin
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sys /sys 2>/dev/null
mount -t devtmpfs dev /dev 2>/dev/null
host=` + hostName + `; server=` + serverIP + `:` + httpPort + `
n=$(( $(cat /bootcount 2>/dev/null || echo 0) + 1 )); echo $n > /bootcount; sync
echo "<5>e2e: userspace up host=$host boot=$n" > /dev/kmsg
mkdir -p /www; echo "e2e ok $host" > /www/index.html
httpd -p ` + smokePort + ` -h /www
for i in 1 2 3 4 5 6 7 8 9 10; do
  if wget -q -O /dev/null --header 'Content-Type: application/json' \
      --post-data '{"stage":"userspace","ok":true,"message":"busybox init up, httpd on :` + smokePort + `"}' \
      "http://$server/api/v1/hosts/$host/stages"; then
    echo "<5>e2e: userspace reported" > /dev/kmsg; break
  fi
  sleep 2
done
while true; do sleep 3600; done
`

// makeRootImage builds a small ext4 filesystem (busybox userspace) and
// imports it as the host's root image with the exclusive-lock feature.
func (s *stack) makeRootImage() {
	t := s.t
	dir := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "sbin", "proc", "sys", "dev", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, _ := exec.LookPath("busybox")
	copyFile(t, bb, filepath.Join(dir, "bin/busybox"), 0o755)
	applets := strings.Fields(harness.Output(t, exec.Command(bb, "--list")))
	for _, a := range applets {
		if a != "busybox" {
			os.Symlink("busybox", filepath.Join(dir, "bin", a))
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "sbin/init"), []byte(rootInit), 0o755); err != nil {
		t.Fatal(err)
	}
	s.rootImg = filepath.Join(t.TempDir(), "root.ext4")
	harness.Output(t, exec.Command("mkfs.ext4", "-q", "-F", "-L", "e2eroot", "-d", dir, s.rootImg, "64M"))
	s.importRoot(t)
}

// importRoot imports the ext4 file as the host's root image.
func (s *stack) importRoot(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := s.ceph.Rbd(ctx, "import", "--no-progress", "--image-feature", "layering,exclusive-lock",
		s.rootImg, poolName+"/"+imageName); err != nil {
		t.Fatalf("rbd import: %v: %s", err, out)
	}
}

// reimportRoot replaces the root image with a fresh copy (after a
// scenario whose lock holder wrote over it).
func (s *stack) reimportRoot(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		out, err := s.ceph.Rbd(ctx, "rm", "--no-progress", poolName+"/"+imageName)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("rbd rm: %v: %s", err, out)
		}
		time.Sleep(time.Second) // a fenced client's watch goes away within seconds
	}
	s.importRoot(t)
}

// makeArtifacts lays out the artifact root (the Debian kernel) and warms
// the initramfs cache that netbootd assembles the host's nbinit image from
// (/boot/{host}/initrd), so that the first boot does not wait for the base
// image to compile (a cold build takes minutes on a loaded 2-core machine).
func (s *stack) makeArtifacts(root string) {
	t := s.t
	x86 := filepath.Join(root, "x86")
	if err := os.MkdirAll(x86, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, s.kernel.Vmlinuz, filepath.Join(x86, "vmlinuz"), 0o644)
	b, err := initramfs.New(initramfs.Config{CacheDir: initramfsCache(), SourceDir: sourceDir(t)})
	if err != nil {
		t.Fatalf("initramfs builder: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := b.Image(ctx, io.Discard, initramfs.ImageSpec{Arch: "amd64", ModulesDir: s.kernel.Modules,
		Host: initramfs.HostConfig{Host: hostName}}); err != nil {
		t.Fatalf("build nbinit image: %v", err)
	}
}

// initramfsCache is kept between runs (like the kernel).
func initramfsCache() string { return filepath.Join(harness.CacheDir(), "initramfs-e2e") }

// sourceDir is the netboot module root (nbinit is compiled from it).
func sourceDir(t *testing.T) string {
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("find the netboot module: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		t.Fatal(err)
	}
}

// daemonConfig is netbootd's configuration: every listener on the bridge
// address, full DHCP with router advertisements on the bridge only, the
// cluster, one class with an HTTP smoke check and one host.
func (s *stack) daemonConfig(root string) string {
	return fmt.Sprintf(`server: {address: %[1]s, artifact_root: %[2]s, api_token: %[3]s}
tftp: {listen: "%[1]s:69"}
http: {listen: "%[1]s:%[4]s"}
netconsole: {listen: "%[1]s:6666"}
store: {path: %[5]s}
dhcp: {mode: full, interfaces: [%[6]s], netmask: 255.255.255.0, router_advert: true}
ceph:
  monitors: ["%[1]s:6789"]
  conf_file: %[7]s
  user: admin
  keyring: %[8]s
  timeout: 10s
rbd: {unrecorded_same_ip: refuse}
initramfs:
  cache_dir: %[15]s
  source_dir: %[16]s
  modules: {amd64: %[17]s}
  on_failure: halt
  deadline: 90s
classes:
  vm:
    arch: amd64
    firmware: bios
    dir: x86
    kernel: vmlinuz
    initrd: nbinit
    cmdline: "console=ttyS0,115200 loglevel=7 panic=-1"
    deadlines:
      root-prepare: 30s
    smoke:
      - {name: httpd, kind: http, target: "http://{{.ip}}:%[9]s/", expect: "200", timeout: 3s, deadline: 60s}
hosts:
  - {name: %[10]s, mac: "%[11]s", ip: %[12]s, class: vm, arch: amd64, rbd: {pool: %[13]s, image: %[14]s}}
`, serverIP, root, apiToken, httpPort, filepath.Join(s.dir, "netboot.db"), s.ns.BridgeDev,
		s.ceph.ConfPath, s.ceph.AdminKeyring, smokePort, hostName, hostMAC, hostIP, poolName, imageName,
		initramfsCache(), sourceDir(s.t), s.kernel.Modules)
}

// waitAPI waits until netbootd answers on its API (or exits).
func (s *stack) waitAPI() {
	t := s.t
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if s.netbootd.Exited() {
			t.Fatalf("netbootd exited: %v (see %s)", s.netbootd.Wait(), filepath.Join(s.dir, "netbootd.log"))
		}
		resp, err := s.api.Get("http://" + serverIP + ":" + httpPort + "/api/v1/hosts")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("netbootd API did not come up (see %s)", filepath.Join(s.dir, "netbootd.log"))
}

// startVM boots the host's VM from its NIC's iPXE ROM.
func (s *stack) startVM(t *testing.T, name string) *harness.VM {
	return harness.StartVM(t, harness.VMConfig{Name: name, Netns: s.ns, Dir: s.dir, MAC: hostMAC,
		BootNet: true, MemoryMiB: 768})
}

// ctl runs netbootctl inside the namespace and returns its exit code and output.
func (s *stack) ctl(t *testing.T, ctx context.Context, args ...string) (int, string) {
	t.Helper()
	full := append([]string{"--server", "http://" + serverIP + ":" + httpPort, "--token", apiToken}, args...)
	out, err := s.ns.Command(ctx, s.ctlBin(), full...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	default:
		t.Fatalf("netbootctl %v: %v", args, err)
		return -1, ""
	}
}

func (s *stack) ctlBin() string { return s.ctlPath }

// wait runs `netbootctl wait HOST --since T --timeout D --json` and decodes the report.
func (s *stack) wait(t *testing.T, since time.Time, timeout time.Duration) (int, *boot.Report, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout+time.Minute)
	defer cancel()
	code, out := s.ctl(t, ctx, "wait", hostName, "--since", since.UTC().Format(time.RFC3339Nano),
		"--timeout", timeout.String(), "--json")
	w := decodeWait(out)
	if w == nil {
		return code, nil, out
	}
	return code, w.Report, out
}

// waitOutput is what `netbootctl wait --json` prints per host.
type waitOutput struct {
	Host   string       `json:"host"`
	Code   int          `json:"exit_code"`
	Status string       `json:"status"`
	Error  string       `json:"error"`
	Report *boot.Report `json:"report"`
}

// decodeWait finds the JSON result in netbootctl's output (one object or a
// list of one).
func decodeWait(out string) *waitOutput {
	i := strings.IndexAny(out, "[{")
	if i < 0 {
		return nil
	}
	var w waitOutput
	if json.Unmarshal([]byte(out[i:]), &w) == nil && w.Host != "" {
		return &w
	}
	var ws []waitOutput
	if json.Unmarshal([]byte(out[i:]), &ws) == nil && len(ws) > 0 {
		return &ws[0]
	}
	return nil
}
