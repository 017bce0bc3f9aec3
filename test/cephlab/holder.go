package cephlab

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	holderOnce sync.Once
	holderBin  string
	holderErr  error
)

// CephTags are the go-ceph build tags for the holder (env NETBOOT_CEPH_TAGS,
// default "pacific", Debian 12's Ceph).
func CephTags() string {
	if t := os.Getenv("NETBOOT_CEPH_TAGS"); t != "" {
		return t
	}
	return "pacific"
}

// HolderBinary builds test/cephlab/cmd/holder once per test process.
func HolderBinary(t testing.TB) string {
	t.Helper()
	holderOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cephlab-holder-")
		if err != nil {
			holderErr = err
			return
		}
		bin := filepath.Join(dir, "holder")
		cmd := exec.Command("go", "build", "-tags", CephTags(), "-o", bin, "netboot/test/cephlab/cmd/holder")
		if out, err := cmd.CombinedOutput(); err != nil {
			holderErr = fmt.Errorf("build holder: %w: %s", err, out)
			return
		}
		holderBin = bin
	})
	if holderErr != nil {
		t.Fatalf("cephlab: %v", holderErr)
	}
	return holderBin
}

// HolderConfig says which image a holder locks and as whom.
type HolderConfig struct {
	Pool, Image string
	// Conf is the client's ceph.conf; default the admin conf.
	Conf string
	// User without "client."; default admin.
	User string
	// Bind asks librados to connect from this local IP
	// (ms_bind_before_connect + public_addr). Ceph 16.2 ignores it for
	// clients (tested: the address stays 127.0.0.1); to give a holder
	// another host's IP run it in that host's namespace (NetNS, see Net).
	Bind string
	// Acquire false makes it a plain librbd writer (lock taken implicitly
	// on write, handed over on request).
	NoAcquire bool
	// Interval between writes; default 100ms.
	Interval time.Duration
	// NetNS runs the holder in that namespace (a simulated host of a Net);
	// default: the cluster's own namespace.
	NetNS string
}

// Holder is a running stale-lock holder process.
type Holder struct {
	// Addr is its client address (ip:port/nonce), Client "client.N".
	Addr, Client string
	cmd          *exec.Cmd
	out          string
	done         chan struct{}
}

// StartHolder starts a holder and waits (up to timeout) until it holds the
// lock. It is SIGKILLed in t.Cleanup if still running.
func (c *Cluster) StartHolder(t testing.TB, hc HolderConfig, timeout time.Duration) (*Holder, error) {
	t.Helper()
	bin := HolderBinary(t)
	h, err := c.startHolder(bin, hc)
	if err != nil {
		return nil, err
	}
	t.Cleanup(h.Kill)
	if err := h.waitHolding(timeout); err != nil {
		h.Kill()
		return nil, err
	}
	return h, nil
}

func (c *Cluster) startHolder(bin string, hc HolderConfig) (*Holder, error) {
	if hc.Conf == "" {
		hc.Conf = c.ConfPath
	}
	if hc.User == "" {
		hc.User = "admin"
	}
	if hc.Pool == "" {
		hc.Pool = c.cfg.Pool
	}
	if hc.Interval == 0 {
		hc.Interval = 100 * time.Millisecond
	}
	f, err := os.CreateTemp(c.cfg.Dir, "holder-*.out")
	if err != nil {
		return nil, fmt.Errorf("start holder: %w", err)
	}
	args := []string{"-conf", hc.Conf, "-user", hc.User, "-pool", hc.Pool, "-image", hc.Image, "-bind", hc.Bind,
		"-interval", hc.Interval.String(), "-acquire=" + strconv.FormatBool(!hc.NoAcquire)}
	argv := append([]string{bin}, args...)
	var cmd *exec.Cmd
	if hc.NetNS != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", hc.NetNS}, argv...)...)
	} else {
		cmd = c.command(context.Background(), argv...)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start holder: %w", err)
	}
	h := &Holder{cmd: cmd, out: f.Name(), done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(h.done) }()
	return h, nil
}

func (h *Holder) waitHolding(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(h.out)
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) == 3 && f[0] == "HOLDING":
				h.Addr, h.Client = f[1], f[2]
				return nil
			case len(f) > 0 && f[0] == "FAIL":
				return fmt.Errorf("holder failed: %s", line)
			}
		}
		select {
		case <-h.done:
			return fmt.Errorf("holder exited before holding the lock: %s", strings.TrimSpace(string(data)))
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("holder did not hold the lock within %s", timeout)
}

// PID is the holder's process id.
func (h *Holder) PID() int { return h.cmd.Process.Pid }

// Kill SIGKILLs the holder (a crash or hard reset) and waits for it.
func (h *Holder) Kill() {
	_ = h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.done
}

// Hang SIGSTOPs the holder (a hung host: alive, not answering).
func (h *Holder) Hang() { _ = h.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume SIGCONTs a hung holder.
func (h *Holder) Resume() { _ = h.cmd.Process.Signal(syscall.SIGCONT) }

// Write is one write the holder attempted.
type Write struct {
	Start, End time.Time
	Err        string
}

// Writes returns the writes the holder logged so far.
func (h *Holder) Writes() ([]Write, error) {
	f, err := os.Open(h.out)
	if err != nil {
		return nil, fmt.Errorf("read holder output: %w", err)
	}
	defer f.Close()
	var ws []Write
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.SplitN(sc.Text(), " ", 3)
		if len(fs) < 3 || (fs[0] != "W" && fs[0] != "E") {
			continue
		}
		a, err1 := strconv.ParseInt(fs[1], 10, 64)
		if err1 != nil {
			continue // a partial last line of a killed process
		}
		if fs[0] == "E" {
			ws = append(ws, Write{Start: time.Unix(0, a), End: time.Unix(0, a), Err: fs[2]})
			continue
		}
		b, err2 := strconv.ParseInt(fs[2], 10, 64)
		if err2 != nil {
			continue
		}
		ws = append(ws, Write{Start: time.Unix(0, a), End: time.Unix(0, b)})
	}
	return ws, sc.Err()
}

// LockOwnerCLI returns the image's locker address as `rbd lock ls` shows
// it ("" when unlocked): an independent view for assertions.
func (c *Cluster) LockOwnerCLI(ctx context.Context, pool, image string) (string, error) {
	out, err := c.Rbd(ctx, "lock", "ls", "--format", "json", pool+"/"+image)
	if err != nil {
		return "", err
	}
	var l []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		return "", fmt.Errorf("parse rbd lock ls: %w", err)
	}
	if len(l) == 0 {
		return "", nil
	}
	return l[0].Address, nil
}

// BenchWriter is `rbd bench --io-type write` running against an image.
type BenchWriter struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// StartRbdBench starts a long `rbd bench --io-type write` on pool/image
// (a plain librbd writer; kill it with Kill to make a stale lock).
// netns, when set, is a simulated host's namespace.
func (c *Cluster) StartRbdBench(t testing.TB, netns, pool, image string) *BenchWriter {
	t.Helper()
	argv := []string{"rbd", "-c", c.ConfPath, "bench", "--io-type", "write", "--io-size", "4K",
		"--io-threads", "1", "--io-total", "10G", "--io-pattern", "rand", pool + "/" + image}
	cmd := c.command(context.Background(), argv...)
	if netns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", netns}, argv...)...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("cephlab: start rbd bench: %v", err)
	}
	b := &BenchWriter{cmd: cmd, done: make(chan struct{})}
	go func() { b.err = cmd.Wait(); close(b.done) }()
	t.Cleanup(b.Kill)
	return b
}

// Kill SIGKILLs the writer and waits for it.
func (b *BenchWriter) Kill() {
	_ = b.cmd.Process.Signal(syscall.SIGKILL)
	<-b.done
}

// Exited reports whether the writer has already exited.
func (b *BenchWriter) Exited() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// RunRbdBench runs a short `rbd bench --io-type write` (one 4K write) to
// completion: a fresh plain librbd client that must get the lock unaided.
func (c *Cluster) RunRbdBench(ctx context.Context, pool, image string) error {
	_, err := c.Rbd(ctx, "bench", "--io-type", "write", "--io-size", "4K", "--io-total", "4K", pool+"/"+image)
	return err
}
