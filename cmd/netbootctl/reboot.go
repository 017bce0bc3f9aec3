package main

import (
	"fmt"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"netboot/internal/boot"
)

func init() { register(newRebootExpectCmd) }

func newRebootExpectCmd() *cobra.Command {
	var (
		deadline time.Duration
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "reboot-expect HOST",
		Short: "Announce that HOST is about to reboot: run its smoke checks as a baseline",
		Long: `Announce a reboot before rebooting HOST. netbootd runs the host class's smoke
checks now as a baseline; after the next boot, a check that passed now and
fails then is a regression (netbootctl wait exits 1). If no boot attempt
starts within --deadline the reboot is reported as skipped (exit 2).
Needs the API token.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]string{}
			if deadline > 0 {
				body["deadline"] = deadline.String()
			}
			var x boot.Expectation
			if err := newClient().do(cmd.Context(), "POST", "/api/v1/hosts/"+url.PathEscape(args[0])+"/reboots", nil, body, &x); err != nil {
				return err
			}
			if asJSON {
				return writeJSONTo(cmd.OutOrStdout(), x)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "reboot of %s announced at %s; a boot must start by %s\n", x.Host,
				x.Announced.Format(time.RFC3339), x.Deadline.Format(time.RFC3339))
			for _, b := range x.Baseline {
				state := "pass"
				if !b.OK {
					state = "FAIL"
				}
				fmt.Fprintf(w, "baseline %-16s %s  %s\n", b.Name, state, b.Message)
			}
			fmt.Fprintf(w, "then: netbootctl wait %s --since %s\n", x.Host, x.Announced.Format(time.RFC3339Nano))
			return nil
		},
	}
	cmd.Flags().DurationVar(&deadline, "deadline", 0, "how long the reboot may take to start a boot (default: the server's, 15m)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
