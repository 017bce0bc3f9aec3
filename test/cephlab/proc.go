package cephlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// command builds a command, inside the namespace when configured.
func (c *Cluster) command(ctx context.Context, argv ...string) *exec.Cmd {
	if c.cfg.NetNS != "" {
		argv = append([]string{"ip", "netns", "exec", c.cfg.NetNS}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "CEPH_CONF="+c.ConfPath)
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// run runs a command to completion with stdin and returns its stdout.
func (c *Cluster) run(ctx context.Context, stdin []byte, argv ...string) ([]byte, error) {
	cmd := c.command(ctx, argv...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func (c *Cluster) out(ctx context.Context, argv ...string) (string, error) {
	b, err := c.run(ctx, nil, argv...)
	return string(b), err
}

func (c *Cluster) cephArgs(args ...string) []string {
	return append([]string{"ceph", "-c", c.ConfPath, "--connect-timeout", "10"}, args...)
}

// Ceph runs the ceph CLI as client.admin and returns its stdout.
func (c *Cluster) Ceph(ctx context.Context, args ...string) (string, error) {
	return c.out(ctx, c.cephArgs(args...)...)
}

// Rbd runs the rbd CLI as client.admin and returns its stdout.
func (c *Cluster) Rbd(ctx context.Context, args ...string) (string, error) {
	return c.out(ctx, append([]string{"rbd", "-c", c.ConfPath}, args...)...)
}

// startDaemon starts one daemon in the foreground as our child.
func (c *Cluster) startDaemon(name string, argv ...string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, running := c.procs[name]; running {
		return nil
	}
	logf, err := os.OpenFile(filepath.Join(c.cfg.Dir, "log", name+".stderr"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	cmd := c.command(context.Background(), argv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	c.procs[name], c.waits[name] = cmd, done
	return nil
}

// stopDaemon sends SIGTERM to exactly that daemon's PID, SIGKILL after 15 s.
func (c *Cluster) stopDaemon(name string) error {
	c.mu.Lock()
	cmd, ok := c.procs[name]
	done := c.waits[name]
	delete(c.procs, name)
	delete(c.waits, name)
	c.mu.Unlock()
	if !ok {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return nil
	case <-time.After(15 * time.Second):
	}
	_ = cmd.Process.Kill()
	<-done
	return fmt.Errorf("stop %s: pid %d ignored SIGTERM for 15s, killed", name, cmd.Process.Pid)
}

// PIDs returns the running daemons' PIDs by name ("mon.a", "osd.0").
func (c *Cluster) PIDs() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[string]int{}
	for n, cmd := range c.procs {
		m[n] = cmd.Process.Pid
	}
	return m
}

func (c *Cluster) startMon(ctx context.Context) error {
	if err := c.startDaemon("mon.a", "ceph-mon", "-f", "-c", c.ConfPath, "-i", "a"); err != nil {
		return err
	}
	return c.waitFor(ctx, "mon.a in quorum", func(ctx context.Context) bool {
		_, err := c.Ceph(ctx, "mon", "stat")
		return err == nil
	})
}

// StartOSD starts osd.0 and waits until it reports "active" on its admin
// socket (after a restart the osdmap may still show the old instance up).
func (c *Cluster) StartOSD(ctx context.Context) error {
	if err := c.startDaemon("osd.0", "ceph-osd", "-f", "-c", c.ConfPath, "-i", "0"); err != nil {
		return err
	}
	asok := filepath.Join(c.cfg.Dir, "run", "osd.0.asok")
	return c.waitFor(ctx, "osd.0 active", func(ctx context.Context) bool {
		out, err := c.out(ctx, "ceph", "--admin-daemon", asok, "status")
		return err == nil && strings.Contains(out, `"state": "active"`)
	})
}

// StopOSD stops osd.0 (the mon keeps answering; I/O blocks).
func (c *Cluster) StopOSD() error { return c.stopDaemon("osd.0") }

// StopMon stops the monitor.
func (c *Cluster) StopMon() error { return c.stopDaemon("mon.a") }

// Stop stops every daemon of this cluster (exactly its PIDs).
func (c *Cluster) Stop() error {
	return errors.Join(c.stopDaemon("osd.0"), c.stopDaemon("mon.a"))
}

// Restart stops and starts the daemons; data survives (clean memstore
// shutdown).
func (c *Cluster) Restart(ctx context.Context) error {
	if err := c.Stop(); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	if err := c.startMon(ctx); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	if err := c.StartOSD(ctx); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	return nil
}

func (c *Cluster) waitFor(ctx context.Context, what string, ok func(context.Context) bool) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		good := ok(cctx)
		cancel()
		if good {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", what, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// LogTail returns the last lines of every daemon log, for failure reports.
func (c *Cluster) LogTail() string {
	files, _ := filepath.Glob(filepath.Join(c.cfg.Dir, "log", "*"))
	sort.Strings(files)
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil || len(data) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(&b, "== %s\n%s\n", filepath.Base(f), strings.Join(lines, "\n"))
	}
	return b.String()
}

// Diagnostics returns the OSD's in-flight and recent slow ops, `ceph -s`
// and the daemon log tails: what a failed test prints.
func (c *Cluster) Diagnostics() string {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var b strings.Builder
	asok := filepath.Join(c.cfg.Dir, "run", "osd.0.asok")
	for _, q := range []string{"dump_ops_in_flight", "dump_historic_slow_ops", "dump_blocked_ops"} {
		out, err := c.out(ctx, "ceph", "--admin-daemon", asok, q)
		fmt.Fprintf(&b, "== osd.0 %s (%v)\n%s\n", q, err, out)
	}
	out, err := c.Ceph(ctx, "-s")
	fmt.Fprintf(&b, "== ceph -s (%v)\n%s\n", err, out)
	b.WriteString(c.LogTail())
	return b.String()
}
