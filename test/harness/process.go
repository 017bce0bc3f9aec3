package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StopGrace is how long Stop waits after SIGTERM before it sends SIGKILL.
const StopGrace = 5 * time.Second

// Proc is a child process started by a test. It is stopped by its PID
// (SIGTERM, then SIGKILL after StopGrace) in t.Cleanup, whatever the outcome.
type Proc struct {
	Cmd  *exec.Cmd
	Name string

	done    chan struct{}
	waitErr error
	stopMu  sync.Mutex
	stopped bool
}

// StartProc starts cmd and registers its stop in t.Cleanup. If logPath is not
// empty, the command's stdout and stderr (when not already set) go to that file;
// otherwise they are discarded. Stdin is /dev/null unless set.
func StartProc(t testing.TB, name string, cmd *exec.Cmd, logPath string) *Proc {
	t.Helper()
	p, err := startProc(name, cmd, logPath)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Logf("stop %s (pid %d): %v", name, p.PID(), err)
		}
	})
	return p
}

func startProc(name string, cmd *exec.Cmd, logPath string) (*Proc, error) {
	var logFile *os.File
	if logPath != "" {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open log %s: %w", logPath, err)
		}
		logFile = f
		if cmd.Stdout == nil {
			cmd.Stdout = f
		}
		if cmd.Stderr == nil {
			cmd.Stderr = f
		}
	}
	if cmd.SysProcAttr == nil {
		// If the test binary dies (go test -timeout panics skip cleanups),
		// the kernel kills the child with it instead of orphaning it.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	if err := cmd.Start(); err != nil {
		if logFile != nil {
			logFile.Close()
		}
		return nil, fmt.Errorf("exec %s: %w", cmd.Path, err)
	}
	p := &Proc{Cmd: cmd, Name: name, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		if logFile != nil {
			logFile.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// PID is the process id.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to exit and returns its exit error.
func (p *Proc) Wait() error {
	<-p.done
	return p.waitErr
}

// Signal sends sig to the process if it is still running.
func (p *Proc) Signal(sig os.Signal) error {
	if p.Exited() {
		return nil
	}
	if err := p.Cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s pid %d: %w", p.Name, p.PID(), err)
	}
	return nil
}

// Stop sends SIGTERM, waits up to StopGrace, then SIGKILL, and waits for the
// exit. Stopping twice is harmless. An exit caused by our signal is not an error.
func (p *Proc) Stop() error {
	p.stopMu.Lock()
	defer p.stopMu.Unlock()
	if p.stopped {
		return nil
	}
	p.stopped = true
	if p.Exited() {
		return nil
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(StopGrace):
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-p.done
	return nil
}

// Output runs cmd to completion and returns its combined output, failing the
// test (with the output) when it exits non-zero.
func Output(t testing.TB, cmd *exec.Cmd) string {
	t.Helper()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd.String(), err, out)
	}
	return string(out)
}
