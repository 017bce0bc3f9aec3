package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"

	"netboot/internal/clock"
)

func notifyChild(c chan<- os.Signal) { signal.Notify(c, unix.SIGCHLD) }

func main() {
	if os.Getpid() == 1 {
		go reapZombies()
	} else {
		fmt.Fprintln(os.Stderr, "nbinit: warning: not PID 1; this program is the initramfs's /init")
	}
	ctx := context.Background()
	n := &Init{
		Root:    DefaultRoot(),
		Sys:     realSystem{},
		Net:     realNetwork{ARPTable: "/proc/net/arp"},
		Clock:   clock.Real{},
		Sleep:   sleepCtx,
		Console: os.Stderr,
	}
	n.cfg.setDefaults()
	err := n.Run(ctx)
	n.Fail(ctx, err) // PID 1 must never exit
	select {}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
