package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"netboot/test/harness"
)

// peerInit is the unaided peer's /init: what a diskless host does without
// netbootd's hand-over (research/kernel-rbd): a static address, then the
// kernel rbd driver maps the root image itself, mounts it and writes.
const peerInit = `#!/bin/sh
fail() { echo "PEER: FAILED $*"; while true; do sleep 1; done; }
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
modprobe virtio_pci; modprobe virtio_net; modprobe virtio_rng
for i in $(seq 1 100); do [ -e /sys/class/net/eth0 ] && break; sleep 0.1; done
ip link set eth0 up; ip addr add %[1]s/24 dev eth0 || fail "address"
for i in $(seq 1 100); do [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" = 1 ] && break; sleep 0.1; done
# busybox modprobe ignores softdeps: libcrc32c needs a crc32c implementation first
modprobe crc32c_generic && modprobe rbd && modprobe ext4 || fail "modules"
echo "PEER: map start"
echo "%[2]s:6789 name=admin,secret=%[3]s %[4]s %[5]s" > /sys/bus/rbd/add_single_major || fail "map"
echo "PEER: mapped $(cat /sys/bus/rbd/devices/0/client_addr)"
mkdir -p /mnt; mount -t ext4 /dev/rbd0 /mnt || fail "mount"
date > /mnt/peer-write && sync || fail "write"
echo "PEER: first write"
while true; do sleep 1; done
`

const peerIP = "10.66.0.3"

// unaidedPeer measures, in the same run and on the same machine, what the
// hard-reset scenario's hand-over saves: a VM that maps the same image with
// the kernel client alone is reset while it holds the lock, and the next
// boot's map waits for the stale watch to expire (research: reset → first
// write 26–30 s). The figures are logged side by side, not asserted.
func (s *stack) unaidedPeer(t *testing.T) {
	s.clearLocks(t)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	key, err := s.ceph.AdminKey(ctx)
	if err != nil {
		t.Fatalf("admin key: %v", err)
	}
	initrd := harness.BuildBusyboxInitramfs(t, harness.BusyboxInitramfs{
		Kernel:  s.kernel,
		Modules: []string{"virtio_pci", "virtio_net", "virtio_rng", "crc32c_generic", "rbd", "ext4"},
		Init:    fmt.Sprintf(peerInit, peerIP, serverIP, strings.TrimSpace(key), poolName, imageName),
	})
	vm := harness.StartVM(t, harness.VMConfig{Name: "peer-unaided", Netns: s.ns, Dir: s.dir, MAC: "52:54:00:e2:e0:03",
		Kernel: s.kernel.Vmlinuz, Initrd: initrd, Append: "console=ttyS0,115200 loglevel=7 panic=-1"})
	defer vm.Quit(10 * time.Second)
	if l := vm.Expect(t, ctx, `PEER: (first write|FAILED)`); strings.Contains(l.Text, "FAILED") {
		t.Fatalf("unaided peer: %s\n%s", l.Text, vm.Serial.Tail(20))
	}
	mark := vm.Serial.Mark()
	reset := time.Now()
	if err := vm.Reset(); err != nil {
		t.Fatalf("system_reset: %v", err)
	}
	l, err := vm.Serial.ExpectFrom(ctx, mark, regexp.MustCompile(`PEER: (first write|FAILED)`))
	if err != nil || strings.Contains(l.Text, "FAILED") {
		t.Fatalf("the unaided peer did not come back: %v %s\n%s", err, l.Text, vm.Serial.Tail(30))
	}
	unaided := l.Time.Sub(reset)
	waits := 0
	for _, x := range vm.Serial.Lines()[mark:] {
		if strings.Contains(x.Text, "no lock owners detected") {
			waits++
		}
	}
	s.timings.addNote(fmt.Sprintf("unaided peer (kernel client alone): reset→first write %.1fs, %d×\"no lock owners detected\"", unaided.Seconds(), waits))
	if s.handover > 0 {
		t.Logf("stale-lock reboot, reset→first write: netbootd hand-over %.1fs vs unaided kernel client %.1fs (%.2f× faster), same run",
			s.handover.Seconds(), unaided.Seconds(), unaided.Seconds()/s.handover.Seconds())
	} else {
		t.Logf("stale-lock reboot, reset→first write: unaided kernel client %.1fs (the hand-over scenario gave no figure)", unaided.Seconds())
	}
}
