package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"netboot/internal/api"
)

func init() { register(newHostsCmd) }

func newHostsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "hosts",
		Short: "List the inventory's hosts with their latest boot",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var hosts []api.HostView
			if err := newClient().do(cmd.Context(), "GET", "/api/v1/hosts", nil, nil, &hosts); err != nil {
				return err
			}
			if asJSON {
				return writeJSONTo(cmd.OutOrStdout(), hosts)
			}
			printHosts(cmd.OutOrStdout(), hosts, time.Now())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printHosts(w io.Writer, hosts []api.HostView, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tCLASS\tARCH\tIP\tBOOT\tSTAGE\tOUTCOME\tSINCE")
	for _, h := range hosts {
		boot, stage, outcome, since := "-", "-", "never booted", "-"
		if b := h.LastBoot; b != nil {
			boot, stage, outcome = fmt.Sprint(b.Seq), orDash(b.Stage), b.Outcome
			since = now.Sub(b.Updated).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, h.Class, h.Arch, orDash(h.IP), boot, stage, outcome, since)
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
