package harness

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"netboot/internal/testenv"
)

// guestInit brings up eth0 with a static address, sends its boot id over TCP
// to a listener on the bridge and prints a marker; then it idles so the test
// can reset it. (Debian's busybox nc has no UDP mode.)
const guestInit = `#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
modprobe virtio_pci; modprobe virtio_net
for i in $(seq 1 100); do [ -e /sys/class/net/eth0 ] && break; sleep 0.1; done
ip link set eth0 up; ip addr add %s dev eth0
for i in $(seq 1 100); do [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" = 1 ] && break; sleep 0.1; done
echo "hello from $(cat /proc/sys/kernel/random/boot_id)" | nc %s %d
echo "NBHARNESS: up"
while true; do sleep 1; done
`

func TestVMDirectBootResetAndUDPIntoNetns(t *testing.T) {
	testenv.Short(t)
	RequireQEMU(t)
	k := Kernel(t, "amd64")
	ns := NewNetns(t, NetnsConfig{Part: "nbh"})
	l := ns.Listen(t, "tcp4", netip.AddrPortFrom(ns.Addr, 0).String())
	port := l.Addr().(*net.TCPAddr).Port
	msgs := acceptLines(l)
	initrd := BuildBusyboxInitramfs(t, BusyboxInitramfs{
		Kernel:  k,
		Modules: []string{"virtio_pci", "virtio_net"},
		Init:    fmt.Sprintf(guestInit, "10.66.0.2/24", ns.Addr, port),
	})
	vm := StartVM(t, VMConfig{
		Netns: ns, Kernel: k.Vmlinuz, Initrd: initrd,
		Append: "console=ttyS0,115200 panic=-1 loglevel=7",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	vm.Expect(t, ctx, `Linux version `+regexp.QuoteMeta(k.Version))
	vm.Expect(t, ctx, `NBHARNESS: up`)
	first := readMessage(t, msgs)

	mark := vm.Serial.Mark()
	if err := vm.Reset(); err != nil {
		t.Fatalf("reset: %v", err)
	}
	vm.Expect(t, ctx, `NBHARNESS: up`)
	if l, _ := vm.Serial.ExpectFrom(ctx, mark, regexp.MustCompile(`Linux version`)); l.N < mark {
		t.Errorf("no second kernel start after the reset")
	}
	second := readMessage(t, msgs)
	if first == second {
		t.Errorf("same boot id before and after the reset: %q", first)
	}

	if err := vm.Pause(); err != nil {
		t.Fatalf("pause: %v", err)
	}
	if err := vm.Resume(); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if err := vm.Quit(10 * time.Second); err != nil {
		t.Fatalf("quit: %v", err)
	}
}

// acceptLines accepts connections until l is closed and sends the first line
// of each.
func acceptLines(l net.Listener) <-chan string {
	ch := make(chan string, 8)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetReadDeadline(time.Now().Add(time.Minute))
				line, _ := bufio.NewReader(c).ReadString('\n')
				ch <- strings.TrimSpace(line)
			}()
		}
	}()
	return ch
}

func readMessage(t *testing.T, msgs <-chan string) string {
	t.Helper()
	select {
	case msg := <-msgs:
		if !strings.HasPrefix(msg, "hello from ") {
			t.Fatalf("unexpected message %q", msg)
		}
		return msg
	case <-time.After(2 * time.Minute):
		t.Fatal("no message from the guest")
		return ""
	}
}
