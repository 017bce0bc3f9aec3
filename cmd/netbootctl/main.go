// Command netbootctl is the operator's and the orchestrator's client of
// netbootd: hosts, boots, logs, wait, RBD status and plans, initramfs builds
// and config checks.
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		var ec exitCode
		if errors.As(err, &ec) {
			if ec.msg != "" {
				fmt.Fprintln(os.Stderr, "netbootctl:", ec.msg)
			}
			os.Exit(ec.code)
		}
		fmt.Fprintln(os.Stderr, "netbootctl:", err)
		os.Exit(3)
	}
}

// exitCode lets a command choose the process's exit status (netbootctl
// wait: 0 succeeded, 1 failed, 2 stuck/skipped/timeout, 3 could not ask).
type exitCode struct {
	code int
	msg  string
}

func (e exitCode) Error() string { return fmt.Sprintf("exit %d: %s", e.code, e.msg) }
