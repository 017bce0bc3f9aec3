package harness

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"netboot/internal/testenv"
)

// NetnsConfig describes a test network namespace. Zero values mean defaults.
type NetnsConfig struct {
	// Part prefixes the namespace name (e.g. "nbpxe"); default "nbtest".
	Part string
	// Bridge is the bridge's CIDR address; default 10.66.0.1/24. Namespaces are
	// isolated, so every test may use the same subnet.
	Bridge netip.Prefix
	// Bridge6 is the bridge's IPv6 address (added with nodad); default fd66::1/64.
	Bridge6 netip.Prefix
	// BridgeMAC is the bridge's MAC; default 02:66:00:00:00:01.
	BridgeMAC string
}

// Netns is a network namespace created by a test, holding a bridge "nbbr0"
// with the configured addresses, plus tap devices and veth peers added later.
// It is deleted in t.Cleanup together with everything inside it.
type Netns struct {
	Name      string
	BridgeDev string
	Addr      netip.Addr   // bridge IPv4 address
	Prefix    netip.Prefix // bridge IPv4 prefix (e.g. 10.66.0.1/24)
	Addr6     netip.Addr
	BridgeMAC string

	t       testing.TB
	mu      sync.Mutex
	nextDev int
}

var netnsSeq atomic.Int64

func (c NetnsConfig) withDefaults() NetnsConfig {
	if c.Part == "" {
		c.Part = "nbtest"
	}
	if !c.Bridge.IsValid() {
		c.Bridge = netip.MustParsePrefix("10.66.0.1/24")
	}
	if !c.Bridge6.IsValid() {
		c.Bridge6 = netip.MustParsePrefix("fd66::1/64")
	}
	if c.BridgeMAC == "" {
		c.BridgeMAC = "02:66:00:00:00:01"
	}
	return c
}

// RequireNetns skips (or fails under NETBOOT_REQUIRE_ALL=1) unless network
// namespaces can be created here: root and iproute2.
func RequireNetns(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip")
}

// NewNetns creates a uniquely named namespace (<part>-<pid>-<n>) with lo up and
// a bridge carrying cfg's addresses, and deletes it in t.Cleanup (after
// stopping, by PID, anything still running inside it).
func NewNetns(t testing.TB, cfg NetnsConfig) *Netns {
	t.Helper()
	RequireNetns(t)
	cfg = cfg.withDefaults()
	sweepStaleNetns(t, cfg.Part)
	ns := &Netns{
		Name:      fmt.Sprintf("%s-%d-%d", cfg.Part, os.Getpid(), netnsSeq.Add(1)),
		BridgeDev: "nbbr0",
		Addr:      cfg.Bridge.Addr(),
		Prefix:    cfg.Bridge,
		Addr6:     cfg.Bridge6.Addr(),
		BridgeMAC: cfg.BridgeMAC,
		t:         t,
	}
	if out, err := exec.Command("ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
		t.Fatalf("create netns %s: %v: %s", ns.Name, err, out)
	}
	t.Cleanup(ns.destroy)
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", ns.BridgeDev, "type", "bridge"},
		{"link", "set", ns.BridgeDev, "address", ns.BridgeMAC},
		{"addr", "add", cfg.Bridge.String(), "dev", ns.BridgeDev},
		{"-6", "addr", "add", cfg.Bridge6.String(), "dev", ns.BridgeDev, "nodad"},
		{"link", "set", ns.BridgeDev, "up"},
	} {
		ns.IP(t, args...)
	}
	return ns
}

// IP runs `ip -n <ns> args...` and fails the test on error.
func (ns *Netns) IP(t testing.TB, args ...string) string {
	t.Helper()
	return Output(t, exec.Command("ip", append([]string{"-n", ns.Name}, args...)...))
}

// Command returns a command that runs inside the namespace (`ip netns exec`,
// which execs in place: the started PID is the program's own).
func (ns *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Run runs a program inside the namespace and returns its combined output,
// failing the test when it exits non-zero.
func (ns *Netns) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	return Output(t, ns.Command(context.Background(), name, args...))
}

// Start starts a long-running program inside the namespace, logging its
// output to logPath (may be empty) and stopping it by PID in t.Cleanup.
func (ns *Netns) Start(t testing.TB, logPath, name string, args ...string) *Proc {
	t.Helper()
	return StartProc(t, name, ns.Command(context.Background(), name, args...), logPath)
}

func (ns *Netns) newDevName(prefix string) string {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	ns.nextDev++
	return prefix + strconv.Itoa(ns.nextDev-1)
}

// AddTap creates a tap device enslaved to the bridge and returns its name
// (nbtap0, nbtap1, …) for QEMU's -netdev tap,ifname=…
func (ns *Netns) AddTap(t testing.TB) string {
	t.Helper()
	tap := ns.newDevName("nbtap")
	ns.IP(t, "tuntap", "add", tap, "mode", "tap")
	ns.IP(t, "link", "set", tap, "master", ns.BridgeDev)
	ns.IP(t, "link", "set", tap, "up")
	return tap
}

// Peer is a second namespace attached to the bridge by a veth pair: a
// simulated host with interface "eth0" (no address unless configured), for
// real DHCP/TFTP clients that must not run in the server's namespace.
type Peer struct {
	*Netns
	Dev string // interface name inside the peer ("eth0")
	MAC string
}

// AddPeer creates a peer namespace whose eth0 (with mac, or a random
// locally administered one when empty) is veth-linked into the bridge. If addr
// is valid it is assigned to eth0. The peer is deleted in t.Cleanup.
func (ns *Netns) AddPeer(t testing.TB, mac string, addr netip.Prefix) *Peer {
	t.Helper()
	peerNS := &Netns{
		Name:      fmt.Sprintf("%s-p%d", ns.Name, netnsSeq.Add(1)),
		BridgeDev: "",
		t:         t,
	}
	if out, err := exec.Command("ip", "netns", "add", peerNS.Name).CombinedOutput(); err != nil {
		t.Fatalf("create peer netns %s: %v: %s", peerNS.Name, err, out)
	}
	t.Cleanup(peerNS.destroy)
	hostEnd := ns.newDevName("nbveth")
	ns.IP(t, "link", "add", hostEnd, "type", "veth", "peer", "name", "eth0", "netns", peerNS.Name)
	ns.IP(t, "link", "set", hostEnd, "master", ns.BridgeDev)
	ns.IP(t, "link", "set", hostEnd, "up")
	peerNS.IP(t, "link", "set", "lo", "up")
	if mac != "" {
		peerNS.IP(t, "link", "set", "eth0", "address", mac)
	}
	if addr.IsValid() {
		peerNS.IP(t, "addr", "add", addr.String(), "dev", "eth0")
		peerNS.Addr, peerNS.Prefix = addr.Addr(), addr
	}
	peerNS.IP(t, "link", "set", "eth0", "up")
	got := strings.TrimSpace(peerNS.Run(t, "cat", "/sys/class/net/eth0/address"))
	return &Peer{Netns: peerNS, Dev: "eth0", MAC: got}
}

// Do runs fn on an OS thread switched into the namespace. Sockets that fn
// opens stay in the namespace and can be used from any goroutine afterwards,
// so in-process servers can listen inside it.
func (ns *Netns) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// If switching back fails, the thread stays locked and dies with the
		// goroutine instead of returning to the pool in the wrong namespace.
		restored, err := ns.enter(fn)
		if restored {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

func (ns *Netns) enter(fn func() error) (restored bool, err error) {
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return true, fmt.Errorf("enter netns %s: open own netns: %w", ns.Name, err)
	}
	defer orig.Close()
	target, err := os.Open(filepath.Join("/var/run/netns", ns.Name))
	if err != nil {
		return true, fmt.Errorf("enter netns %s: %w", ns.Name, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return true, fmt.Errorf("enter netns %s: setns: %w", ns.Name, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		return false, fmt.Errorf("leave netns %s: setns: %w", ns.Name, err)
	}
	return true, fnErr
}

// Listen opens a stream listener inside the namespace (e.g. "tcp",
// "10.66.0.1:0") and closes it in t.Cleanup.
func (ns *Netns) Listen(t testing.TB, network, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	err := ns.Do(func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen %s %s in %s: %v", network, addr, ns.Name, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// ListenPacket opens a packet socket inside the namespace (e.g. "udp4",
// "0.0.0.0:67") and closes it in t.Cleanup.
func (ns *Netns) ListenPacket(t testing.TB, network, addr string) net.PacketConn {
	t.Helper()
	var c net.PacketConn
	err := ns.Do(func() (err error) {
		c, err = net.ListenPacket(network, addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen %s %s in %s: %v", network, addr, ns.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Dial connects from inside the namespace.
func (ns *Netns) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// PIDs lists the processes running inside the namespace.
func (ns *Netns) PIDs() []int {
	out, err := exec.Command("ip", "netns", "pids", ns.Name).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// destroy stops, by PID, whatever still runs inside the namespace (only this
// test can have started anything there), then deletes it; its taps, bridge and
// veth ends go with it.
func (ns *Netns) destroy() {
	for attempt := 0; attempt < 20; attempt++ {
		pids := ns.PIDs()
		if len(pids) == 0 {
			break
		}
		sig := syscall.SIGTERM
		if attempt >= 10 {
			sig = syscall.SIGKILL
		}
		for _, pid := range pids {
			if attempt == 0 {
				ns.t.Logf("netns %s: stopping leftover pid %d", ns.Name, pid)
			}
			_ = syscall.Kill(pid, sig)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
		ns.t.Errorf("delete netns %s: %v: %s", ns.Name, err, out)
	}
}

// sweepStaleNetns deletes empty namespaces named <part>-<pid>-<n> whose
// test process is gone (a test binary killed before its cleanups ran).
// Namespaces that still hold processes are only reported.
func sweepStaleNetns(t testing.TB, part string) {
	entries, err := os.ReadDir("/var/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), part+"-")
		if !ok {
			continue
		}
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(filepath.Join("/proc", pidText)); err == nil {
			continue // its test is still running
		}
		stale := &Netns{Name: e.Name(), t: t}
		if pids := stale.PIDs(); len(pids) > 0 {
			t.Logf("stale netns %s of dead test pid %d still runs %v; not touching it", e.Name(), pid, pids)
			continue
		}
		if out, err := exec.Command("ip", "netns", "del", e.Name()).CombinedOutput(); err != nil {
			t.Logf("delete stale netns %s: %v: %s", e.Name(), err, out)
		} else {
			t.Logf("deleted stale netns %s (test pid %d is gone)", e.Name(), pid)
		}
	}
}
