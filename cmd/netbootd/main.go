// Command netbootd is the netboot service: DHCP, TFTP and HTTP boot serving,
// netconsole collection, the RBD root hand-over and boot outcomes, in one
// process configured by one YAML file.
//
// Usage:
//
//	netbootd --config FILE
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	configPath := flag.String("config", "netbootd.yaml", "configuration file (YAML)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *configPath); err != nil {
		fmt.Fprintln(os.Stderr, "netbootd:", err)
		os.Exit(1)
	}
}
