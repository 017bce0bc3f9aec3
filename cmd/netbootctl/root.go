package main

import (
	"os"

	"github.com/spf13/cobra"
)

// globalFlags are shared by every command that talks to netbootd.
type globalFlags struct {
	server string
	token  string
}

var global globalFlags

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "netbootctl",
		Short:         "Client of netbootd: hosts, boots, logs, wait, rbd, initramfs, config",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&global.server, "server", envOr("NETBOOT_SERVER", "http://127.0.0.1:8080"), "netbootd base URL (env NETBOOT_SERVER)")
	root.PersistentFlags().StringVar(&global.token, "token", os.Getenv("NETBOOT_TOKEN"), "API bearer token for mutating calls (env NETBOOT_TOKEN)")
	for _, add := range commands {
		root.AddCommand(add())
	}
	return root
}

// commands lists every subcommand constructor; each command's file adds
// itself from an init function so that parts do not edit a shared list.
var commands []func() *cobra.Command

func register(c func() *cobra.Command) { commands = append(commands, c) }

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
