package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"netboot/internal/config"
)

func init() { register(newConfigCmd) }

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with netbootd configuration files"}
	cmd.AddCommand(&cobra.Command{
		Use:   "check FILE",
		Short: "Validate a configuration file; print every error with its line number",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(args[0])
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return exitCode{code: 1, msg: "configuration is invalid"}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d classes, %d hosts)\n", args[0], len(cfg.Classes), len(cfg.Hosts))
			return nil
		},
	})
	return cmd
}
