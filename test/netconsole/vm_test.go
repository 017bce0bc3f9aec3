// Package netconsole_test boots a real Debian kernel under QEMU whose
// netconsole module (one plain target from the module parameter, one
// extended target made through configfs) logs to a real netbootd inside a
// test network namespace, then reads the result back with netbootctl.
package netconsole_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"netboot/internal/store"
	"netboot/internal/testenv"
	"netboot/test/harness"
)

const (
	guestIP  = "10.66.0.2"
	longText = 970 // 'y's in the long line: over 1000 bytes with the extended header
)

// guestInit is the VM's /init: network up, netconsole with a plain target
// (module parameter: replays the boot log from "Linux version"), an extended
// target through configfs, test lines, the init stage reported like nbinit.
const guestInit = `#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
modprobe virtio_pci; modprobe virtio_net
for i in $(seq 1 100); do [ -e /sys/class/net/eth0 ] && break; sleep 0.1; done
ip link set eth0 up; ip addr add {{ip}}/24 dev eth0
for i in $(seq 1 100); do [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" = 1 ] && break; sleep 0.1; done
modprobe netconsole netconsole=6665@{{ip}}/eth0,6666@{{server}}/{{mac}}
mount -t configfs none /sys/kernel/config
d=/sys/kernel/config/netconsole/ext
mkdir $d
echo eth0 > $d/dev_name; echo 6667 > $d/local_port; echo 6666 > $d/remote_port
echo {{ip}} > $d/local_ip; echo {{server}} > $d/remote_ip; echo {{mac}} > $d/remote_mac
echo 1 > $d/extended; echo 1 > $d/enabled
bid=$(cat /proc/sys/kernel/random/boot_id)
echo "<6>NCTEST: hello boot_id=$bid" > /dev/kmsg
echo "<4>NCTEST: long $(printf 'y%.0s' $(seq 1 {{long}}))" > /dev/kmsg
wget -q -O /dev/null --header 'Content-Type: application/json' \
  --post-data '{"stage":"init","ok":true,"message":"busybox test init"}' \
  http://{{server}}:8080/api/v1/hosts/guest/stages || echo "NCTEST: stage post failed"
echo "<6>NCTEST: done boot_id=$bid" > /dev/kmsg
echo "NCTEST: up $bid"
while true; do sleep 1; done
`

const daemonConfig = `server:
  address: {{server}}
  artifact_root: root
  api_token: test-token
  log_level: debug
tftp:
  listen: "off"
http:
  listen: {{server}}:8080
netconsole:
  listen: {{server}}:6666
store:
  path: netboot.db
dhcp:
  mode: "off"
classes:
  vm:
    arch: amd64
    firmware: bios
    dir: x86
    kernel: vmlinuz
    initrd: initrd.img
hosts:
  - name: guest
    mac: 52:54:00:12:34:56
    ip: {{ip}}
    class: vm
`

func expand(s string, ns *harness.Netns) string {
	return strings.NewReplacer("{{ip}}", guestIP, "{{server}}", ns.Addr.String(), "{{mac}}", ns.BridgeMAC,
		"{{long}}", fmt.Sprint(longText)).Replace(s)
}

// buildTools compiles netbootd and netbootctl into dir.
func buildTools(t *testing.T, dir string) (netbootd, netbootctl string) {
	t.Helper()
	for _, name := range []string{"netbootd", "netbootctl"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), "netboot/cmd/"+name)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
	}
	return filepath.Join(dir, "netbootd"), filepath.Join(dir, "netbootctl")
}

type env struct {
	t    *testing.T
	ns   *harness.Netns
	ctl  string
	vm   *harness.VM
	kver string
}

// logs runs `netbootctl logs guest --json args...` inside the namespace.
func (e *env) logs(args ...string) []store.LogLine {
	e.t.Helper()
	cmd := e.ns.Command(context.Background(), e.ctl, append([]string{"--server", "http://" + e.ns.Addr.String() + ":8080", "logs", "guest", "--json"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		e.t.Fatalf("netbootctl logs %v: %v: %s", args, err, stderr.String())
	}
	var lines []store.LogLine
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var l store.LogLine
		if err := dec.Decode(&l); err != nil {
			e.t.Fatalf("netbootctl logs output: %v", err)
		}
		lines = append(lines, l)
	}
	return lines
}

// waitLine polls netbootctl until a line of the latest boot contains text.
func (e *env) waitLine(ctx context.Context, text string) []store.LogLine {
	e.t.Helper()
	for {
		lines := e.logs()
		for _, l := range lines {
			if strings.Contains(l.Text, text) {
				return lines
			}
		}
		select {
		case <-ctx.Done():
			e.t.Fatalf("no line %q in the latest boot's logs (%d lines)\n--- serial:\n%s", text, len(lines), e.vm.Serial.Tail(20))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

var upRe = regexp.MustCompile(`NCTEST: up (\S+)`)

func (e *env) bootOnce(ctx context.Context) (bootID string, lines []store.LogLine) {
	e.t.Helper()
	l := e.vm.Expect(e.t, ctx, `NCTEST: up \S+`)
	bootID = upRe.FindStringSubmatch(l.Text)[1]
	lines = e.waitLine(ctx, "NCTEST: done boot_id="+bootID)
	return bootID, lines
}

// checkBoot asserts what one boot's lines must show.
func (e *env) checkBoot(lines []store.LogLine, bootID string) int64 {
	e.t.Helper()
	if len(lines) == 0 {
		e.t.Fatal("no lines")
	}
	first := lines[0]
	if !strings.HasPrefix(first.Text, "Linux version "+e.kver) || first.KTime != 0 {
		e.t.Errorf("first line of the boot is %q (ktime %d), want the replayed banner at 0", first.Text, first.KTime)
	}
	idx := func(prefix string) int {
		for i, l := range lines {
			if strings.HasPrefix(l.Text, prefix) {
				return i
			}
		}
		return -1
	}
	cmdline, hello, long, done := idx("Command line: "), idx("NCTEST: hello boot_id="+bootID), idx("NCTEST: long "), idx("NCTEST: done boot_id="+bootID)
	if !(0 < cmdline && cmdline < hello && hello < long && long < done) {
		e.t.Errorf("order of lines: command line %d, hello %d, long %d, done %d; want increasing", cmdline, hello, long, done)
	}
	counts := map[string]int{}
	lastSeq := int64(-1)
	for i, l := range lines {
		if l.Host != "guest" || l.BootID != first.BootID {
			e.t.Errorf("line %d %q: host %q boot %d, want guest boot %d", i, l.Text, l.Host, l.BootID, first.BootID)
		}
		if strings.HasPrefix(l.Text, "NCTEST:") {
			counts[l.Text]++
		}
		// Extended lines carry the printk sequence: strictly increasing.
		// (Kernel time is not monotonic in early boot: it steps back when
		// the clocksource changes.)
		if l.Flags&store.LogFlagExtended != 0 {
			if l.Seq <= lastSeq {
				e.t.Errorf("line %d %q: seq %d after %d", i, l.Text, l.Seq, lastSeq)
			}
			lastSeq = l.Seq
		}
	}
	for text, n := range counts {
		if n != 1 {
			e.t.Errorf("line %.40q stored %d times, want once (plain and extended copies are merged)", text, n)
		}
	}
	if long >= 0 {
		l := lines[long]
		want := "NCTEST: long " + strings.Repeat("y", longText)
		if l.Text != want || l.Flags&store.LogFlagExtended == 0 || l.Level != 4 {
			e.t.Errorf("long line: %d bytes, flags %b, level %d; want the reassembled %d-byte extended line of level 4", len(l.Text), l.Flags, l.Level, len(want))
		}
	}
	return first.BootID
}

func TestKernelNetconsoleTwoBoots(t *testing.T) {
	testenv.Short(t)
	harness.RequireQEMU(t)
	testenv.RequireTools(t, "busybox", "go")
	k := harness.Kernel(t, "amd64")
	ns := harness.NewNetns(t, harness.NetnsConfig{Part: "nbnc"})
	dir := harness.ArtifactDir(t)
	netbootd, netbootctl := buildTools(t, t.TempDir())
	if err := os.MkdirAll(filepath.Join(dir, "root", "x86"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "netbootd.yaml")
	if err := os.WriteFile(cfgPath, []byte(expand(daemonConfig, ns)), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "netboot.db"))
	ns.Start(t, filepath.Join(dir, "netbootd.log"), netbootd, "--config", cfgPath)

	initrd := harness.BuildBusyboxInitramfs(t, harness.BusyboxInitramfs{
		Kernel: k, Modules: []string{"virtio_pci", "virtio_net", "netconsole", "configfs"}, Init: expand(guestInit, ns),
	})
	vm := harness.StartVM(t, harness.VMConfig{
		Netns: ns, Kernel: k.Vmlinuz, Initrd: initrd, MAC: "52:54:00:12:34:56", Dir: dir,
		Append: "console=ttyS0,115200 panic=-1 loglevel=7",
	})
	e := &env{t: t, ns: ns, ctl: netbootctl, vm: vm, kver: k.Version}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	bid1, lines1 := e.bootOnce(ctx)
	boot1 := e.checkBoot(lines1, bid1)

	if err := vm.Reset(); err != nil {
		t.Fatalf("reset: %v", err)
	}
	bid2, lines2 := e.bootOnce(ctx)
	if bid1 == bid2 {
		t.Fatalf("the guest reports the same boot_id after the reset")
	}
	boot2 := e.checkBoot(lines2, bid2)
	if boot2 == boot1 {
		t.Errorf("second boot stored under the first boot's id %d", boot1)
	}
	// --boot -1 is the first boot again, complete.
	prev := e.logs("--boot", "-1")
	if got := e.checkBoot(prev, bid1); got != boot1 {
		t.Errorf("--boot -1 gave boot %d, want %d", got, boot1)
	}
	t.Logf("boot %d: %d lines; boot %d: %d lines", boot1, len(prev), boot2, len(lines2))
}
