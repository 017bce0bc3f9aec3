// Command nbinit is PID 1 of netboot's initramfs. It brings a diskless host
// from the kernel onto its RBD root: it mounts the pseudo filesystems, loads
// the kernel modules listed by the image builder, waits for carrier, gets a
// DHCP lease, turns netconsole on (extended mode, via configfs), asks
// netbootd to prepare the root image, maps it with the kernel rbd driver,
// mounts it and switch_roots into the real init.
//
// Each stage is written to /dev/kmsg as a marker (netboot/initramfs/marker)
// and posted to POST /api/v1/hosts/{name}/stages. A failing stage is
// retried with backoff until the deadline, then nbinit opens the rescue
// shell, reboots or idles, as configured. PID 1 never exits.
//
// nbinit is pure Go (no cgo) and does not import rbd/. It logs to /dev/kmsg
// (which reaches the serial console and netconsole) rather than through zap,
// and speaks HTTP without net/http: both keep the image small. Everything it touches
// goes through Root (paths) and the System/Network interfaces so that tests
// run every stage against a fake root under a temp dir.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"netboot/initramfs/marker"
	"netboot/internal/clock"
)

// Root holds the paths nbinit works on; tests point them into a temp dir.
type Root struct {
	Dev, Proc, Sys, Run, ConfigFS string
	// ConfigFile and ModuleList are the files the image builder writes.
	ConfigFile, ModuleList string
	// NewRoot is where the root image is mounted before switch_root.
	NewRoot string
}

// DefaultRoot is the real system's layout.
func DefaultRoot() Root {
	return Root{Dev: "/dev", Proc: "/proc", Sys: "/sys", Run: "/run", ConfigFS: "/sys/kernel/config",
		ConfigFile: "/etc/nbinit/config.json", ModuleList: "/etc/nbinit/modules", NewRoot: "/newroot"}
}

// System is the privileged syscalls nbinit needs.
type System interface {
	Mount(source, target, fstype string, flags uintptr, data string) error
	LoadModule(path, params string) error // already loaded => nil or os.ErrExist
	SwitchRoot(newRoot, init string) error
	// WriteSysfs writes an existing sysfs/configfs/procfs attribute.
	WriteSysfs(path string, data []byte) error
	Reboot() error
	// RunShell runs the rescue shell on the console until it exits.
	RunShell(ctx context.Context, shell string) error
}

// Network configures the host's network.
type Network interface {
	LinkUp(ifname string) error
	// DHCP gets and applies a lease on ifname.
	DHCP(ctx context.Context, ifname string) (Lease, error)
	// NeighborMAC resolves ip (on-link, reached through ifname) to a MAC.
	NeighborMAC(ctx context.Context, ifname, ip string) (string, error)
}

// Lease is the applied DHCP configuration.
type Lease struct {
	Interface string
	IP        string // address/prefix, e.g. 10.0.0.2/24
	Router    string // "" if none
	ServerID  string // DHCP server identifier
	Hostname  string // option 12, "" if none
}

// Init is one run of nbinit.
type Init struct {
	Root  Root
	Sys   System
	Net   Network
	API   *APIClient // set by the network stage (tests may preset one)
	Clock clock.Clock
	// Sleep waits d or until ctx ends; tests advance a fake clock instead.
	Sleep func(ctx context.Context, d time.Duration) error
	// Console receives markers while /dev/kmsg is not available.
	Console io.Writer

	cfg      Config
	lease    Lease
	pending  []StageReport // reports made before the API was reachable
	rootDev  string
	prepared *PrepareResponse
	// netconsoleModule is netconsole.ko, held back by the init stage until
	// the network stage can load it with a target.
	netconsoleModule moduleEntry
}

// stageError is a failure with the stage it belongs to.
type stageError struct {
	Stage string
	Err   error
}

func (e *stageError) Error() string { return e.Stage + ": " + e.Err.Error() }
func (e *stageError) Unwrap() error { return e.Err }

// Run executes the boot chain. It returns only on failure after the
// deadline (the caller then applies OnFailure); on success SwitchRoot does
// not return.
func (n *Init) Run(ctx context.Context) error {
	steps := []struct {
		stage string
		retry bool
		run   func(ctx context.Context, attempt int) (attrs map[string]string, msg string, err error)
	}{
		{"init", false, n.stageInit},
		{"network", true, n.stageNetwork},
		{"root-prepare", true, n.stageRootPrepare},
		{"root-map", true, n.stageRootMap},
		{"root-mount", true, n.stageRootMount},
	}
	for _, s := range steps {
		if err := n.runStage(ctx, s.stage, s.retry, s.run); err != nil {
			return err
		}
	}
	return n.switchRoot(ctx)
}

// runStage runs one stage with retries and backoff until the deadline.
func (n *Init) runStage(ctx context.Context, stage string, retry bool,
	run func(context.Context, int) (map[string]string, string, error)) error {
	deadline := n.Clock.Now().Add(time.Duration(n.cfg.Deadline))
	backoff := time.Second
	for attempt := 1; ; attempt++ {
		started := n.Clock.Now()
		attrs, msg, err := run(ctx, attempt)
		if attrs == nil {
			attrs = map[string]string{}
		}
		attrs["duration_ms"] = fmt.Sprint(n.Clock.Now().Sub(started).Milliseconds())
		if err == nil {
			n.report(ctx, marker.Marker{Stage: stage, Status: marker.StatusOK, Attempt: attempt, Message: msg, Attrs: attrs})
			return nil
		}
		last := !retry || ctx.Err() != nil || !n.Clock.Now().Add(backoff).Before(deadline)
		if !last {
			attrs["retry_in"] = backoff.String()
		}
		n.report(ctx, marker.Marker{Stage: stage, Status: marker.StatusFailed, Attempt: attempt, Message: err.Error(), Attrs: attrs})
		if last {
			return &stageError{Stage: stage, Err: fmt.Errorf("giving up after %d attempt(s): %w", attempt, err)}
		}
		if err := n.Sleep(ctx, backoff); err != nil {
			return &stageError{Stage: stage, Err: err}
		}
		backoff = min(backoff*2, 15*time.Second)
	}
}

// report writes the marker to /dev/kmsg and posts it to the API (queued
// until the API is known).
func (n *Init) report(ctx context.Context, m marker.Marker) {
	n.kmsg(m.String())
	r := StageReport{Stage: m.Stage, OK: m.OK(), Message: m.Message, Attrs: m.Attrs}
	if m.Attempt > 0 {
		r.Attrs = copyWith(m.Attrs, "attempt", fmt.Sprint(m.Attempt))
	}
	n.pending = append(n.pending, r)
	n.flushReports(ctx)
}

func (n *Init) flushReports(ctx context.Context) {
	if n.API == nil {
		return
	}
	for len(n.pending) > 0 {
		if err := n.API.PostStage(ctx, n.pending[0]); err != nil {
			n.kmsg(fmt.Sprintf("nbinit: cannot post stage %s to %s: %v", n.pending[0].Stage, n.API.Base, err))
			if len(n.pending) > 32 {
				n.pending = n.pending[len(n.pending)-32:]
			}
			return
		}
		n.pending = n.pending[1:]
	}
}

func copyWith(m map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for a, b := range m {
		out[a] = b
	}
	out[k] = v
	return out
}

// kmsg writes one line to /dev/kmsg (level notice), else to the console.
func (n *Init) kmsg(line string) {
	f, err := os.OpenFile(filepath.Join(n.Root.Dev, "kmsg"), os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		_, err = f.Write([]byte("<5>" + strings.TrimRight(line, "\n") + "\n"))
		f.Close()
	}
	if err != nil && n.Console != nil {
		fmt.Fprintln(n.Console, line)
	}
}

// Fail applies the configured failure action. It never returns.
func (n *Init) Fail(ctx context.Context, cause error) {
	stage := "init"
	var se *stageError
	if errors.As(cause, &se) {
		stage = se.Stage
	}
	n.kmsg(marker.Marker{Stage: stage, Status: marker.StatusFailed, Message: "boot stopped: " + cause.Error(),
		Attrs: map[string]string{"action": n.cfg.OnFailure}}.String())
	for {
		switch n.cfg.OnFailure {
		case "reboot":
			if err := n.Sys.Reboot(); err != nil {
				n.kmsg("nbinit: reboot failed: " + err.Error())
			}
		case "shell":
			err := n.Sys.RunShell(ctx, n.cfg.Shell)
			n.kmsg(fmt.Sprintf("nbinit: rescue shell %s exited (%v); restarting it", n.cfg.Shell, err))
		}
		if n.Sleep(ctx, 5*time.Second) != nil {
			return // only tests cancel PID 1's context
		}
	}
}
