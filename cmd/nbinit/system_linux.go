package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/u-root/u-root/pkg/kmodule"
	"github.com/u-root/u-root/pkg/mount"
	"golang.org/x/sys/unix"
)

// realSystem is System on the running kernel.
type realSystem struct{}

func (realSystem) Mount(source, target, fstype string, flags uintptr, data string) error {
	err := unix.Mount(source, target, fstype, flags, data)
	if errors.Is(err, unix.EBUSY) && fstype != "" && source == fstype {
		return nil // pseudo filesystem already mounted (kernel automount)
	}
	return err
}

func (realSystem) LoadModule(path, params string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	err = kmodule.FileInit(f, params, 0)
	if errors.Is(err, unix.EEXIST) {
		return os.ErrExist
	}
	return err
}

func (realSystem) SwitchRoot(newRoot, init string) error { return mount.SwitchRoot(newRoot, init) }

func (realSystem) WriteSysfs(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (realSystem) Reboot() error {
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}

func (realSystem) RunShell(ctx context.Context, shell string) error {
	tty, err := os.OpenFile("/dev/console", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open console: %w", err)
	}
	defer tty.Close()
	cmd := exec.CommandContext(ctx, shell)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.Env = append(os.Environ(), "PATH=/bbin:/bin:/sbin:/usr/bin:/usr/sbin")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	return cmd.Run()
}

// reapZombies waits for orphaned children forever (PID 1 duty).
func reapZombies() {
	sig := make(chan os.Signal, 8)
	notifyChild(sig)
	for range sig {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
