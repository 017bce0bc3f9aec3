package bench

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Peer is one TFTP server process under test.
type Peer struct {
	Name string
	Addr netip.AddrPort
	cmd  *exec.Cmd
	cg   string // cgroup-v1 cpuacct directory, when available
	log  *os.File
}

// Server names.
const (
	Netboot = "netboot" // our server (pxe.TFTPServer)
	Pin     = "pin"     // bare github.com/pin/tftp/v3, library defaults
	HPA     = "hpa"     // tftp-hpa in.tftpd
	Dnsmasq = "dnsmasq" // dnsmasq's TFTP server (always port 69)
)

// freePort returns a UDP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port, nil
}

// StartPeer starts server name serving root. exe is this program, re-run
// with -serve for the Go servers; piHosts is the number of Pi serials our
// server knows (so that it resolves SERIAL/ prefixes itself).
func StartPeer(name, exe, root, workDir string, piHosts int, profile string) (*Peer, error) {
	port := 69
	if name != Dnsmasq {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		port = p
	} else if c, err := net.ListenPacket("udp4", "127.0.0.1:69"); err != nil {
		return nil, fmt.Errorf("start dnsmasq: 127.0.0.1:69 is busy (dnsmasq has no TFTP port option): %w", err)
	} else {
		c.Close()
	}
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	var argv, env []string
	switch name {
	case Netboot, Pin:
		argv = []string{exe}
		env = []string{serveEnv + "=" + name, rootEnv + "=" + root, addrEnv + "=" + addr.String(),
			piHostsEnv + "=" + strconv.Itoa(piHosts), profileEnv + "=" + profile}
	case HPA:
		argv = []string{"in.tftpd", "-L", "-s", root, "-a", addr.String()}
	case Dnsmasq:
		argv = []string{"dnsmasq", "-d", "-C", "/dev/null", "--port=0", "--enable-tftp", "--tftp-root=" + root,
			"--listen-address=127.0.0.1", "--bind-interfaces", "--tftp-max=1000", "--quiet-tftp",
			"--pid-file=" + filepath.Join(workDir, "dnsmasq.pid")}
	default:
		return nil, fmt.Errorf("start peer: unknown server %q", name)
	}
	logf, err := os.Create(filepath.Join(workDir, name+".log"))
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Peer{Name: name, Addr: addr, cmd: cmd, log: logf}
	p.cg = joinCgroup(name, cmd.Process.Pid)
	if err := p.waitReady(); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// waitReady fetches ready.txt until the server answers.
func (p *Peer) waitReady() error {
	var last error
	for i := 0; i < 50; i++ {
		t := Fetch(p.Addr, "ready.txt", ClientConfig{BlockSize: 512, Timeout: 100 * time.Millisecond, Retries: 1})
		if t.Err == nil {
			return nil
		}
		last = t.Err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("start %s: not answering: %w (see its log)", p.Name, last)
}

// joinCgroup puts pid (and its future children: tftp-hpa forks one per
// transfer) into a cpuacct cgroup of its own; "" when unavailable.
func joinCgroup(name string, pid int) string {
	dir := fmt.Sprintf("/sys/fs/cgroup/cpuacct/nbtftpbench-%d-%s", os.Getpid(), name)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return ""
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		os.Remove(dir)
		return ""
	}
	return dir
}

// CPU returns the server's CPU time so far (including children when the
// cgroup is available).
func (p *Peer) CPU() time.Duration {
	if p.cg != "" {
		b, err := os.ReadFile(filepath.Join(p.cg, "cpuacct.usage"))
		if err == nil {
			ns, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			return time.Duration(ns)
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+2:])
	var ticks int64
	for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		v, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// Stop ends the server (SIGTERM to its PID, then to its process group,
// which holds only processes it forked) and waits for it.
func (p *Peer) Stop() error {
	pid := p.cmd.Process.Pid
	syscall.Kill(pid, syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		syscall.Kill(pid, syscall.SIGKILL)
		err = <-done
	}
	syscall.Kill(-pid, syscall.SIGKILL) // forked transfer children, if any remain
	p.log.Close()
	if p.cg != "" {
		for i := 0; i < 50 && os.Remove(p.cg) != nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return nil // killed by our signal
	}
	return err
}
