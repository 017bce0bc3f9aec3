package main

import (
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"netboot/rbd"
)

func init() { register(newRBDCmd) }

func newRBDCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rbd",
		Short: "Inspect a host's RBD root image: lock, watchers, blocklist, hand-over plan",
	}
	var asJSON bool
	status := &cobra.Command{
		Use:   "status HOST",
		Short: "Show the root image's lock owner, watchers, the blocklist entries concerning the host and its recorded client",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var st rbd.Status
			if err := newClient().do(cmd.Context(), "GET", "/api/v1/hosts/"+url.PathEscape(args[0])+"/rbd", nil, nil, &st); err != nil {
				return err
			}
			if asJSON {
				return writeJSONTo(cmd.OutOrStdout(), st)
			}
			printRBDStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	plan := &cobra.Command{
		Use:   "plan HOST",
		Short: "Show what root/prepare would do for the host now, changing nothing",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p rbd.PlanView
			if err := newClient().do(cmd.Context(), "GET", "/api/v1/hosts/"+url.PathEscape(args[0])+"/rbd/plan", nil, nil, &p); err != nil {
				return err
			}
			if asJSON {
				return writeJSONTo(cmd.OutOrStdout(), p)
			}
			printRBDPlan(cmd.OutOrStdout(), p)
			return nil
		},
	}
	for _, c := range []*cobra.Command{status, plan} {
		c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
		cmd.AddCommand(c)
	}
	return cmd
}

func printRBDStatus(w io.Writer, st rbd.Status) {
	fmt.Fprintf(w, "host:      %s (%s)\n", st.Host, orDash(st.HostIP))
	fmt.Fprintf(w, "image:     %s\n", st.Image)
	boot := "no boot in progress"
	if st.Booting {
		boot = fmt.Sprintf("boot %d in progress", st.BootID)
	}
	fmt.Fprintf(w, "booting:   %s\n", boot)
	if st.Recorded != nil {
		fmt.Fprintf(w, "recorded:  %s %s (boot %d, %s)\n", st.Recorded.ClientID, st.Recorded.ClientAddr, st.Recorded.BootID, st.Recorded.Time.Format("2006-01-02 15:04:05Z07:00"))
	} else {
		fmt.Fprintln(w, "recorded:  - (no mapped report yet)")
	}
	fmt.Fprintln(w, "lock:")
	if len(st.Observed.Owners) == 0 {
		fmt.Fprintln(w, "  unlocked")
	}
	for _, o := range st.Observed.Owners {
		mode := "exclusive"
		if !o.Exclusive {
			mode = "shared"
		}
		client, cookie := "", ""
		for _, l := range st.Observed.Lockers.Lockers {
			if l.Addr == o.Addr {
				client, cookie = l.Client, l.Cookie
			}
		}
		mark := ""
		if st.Recorded != nil && st.Recorded.ClientAddr == o.Addr.String() {
			mark = "  <- recorded client"
		}
		fmt.Fprintf(w, "  %s %s %s tag=%q cookie=%q%s\n", mode, orDash(client), o.Addr, st.Observed.Lockers.Tag, cookie, mark)
	}
	fmt.Fprintln(w, "watchers:")
	if len(st.Observed.Watchers) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, wt := range st.Observed.Watchers {
		fmt.Fprintf(w, "  client.%d %s cookie=%d\n", wt.ID, wt.Addr, wt.Cookie)
	}
	fmt.Fprintln(w, "blocklist (entries on or covering the host):")
	if len(st.Blocklist) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, e := range st.Blocklist {
		kind := "exact (harmless to a new client)"
		switch {
		case e.IsRange():
			kind = "range: blocks every client of the host"
		case e.Addr.IsWholeIP():
			kind = "whole-IP: blocks every client of the host"
		}
		fmt.Fprintf(w, "  %s until %s  %s\n", e, e.Until.Format("2006-01-02 15:04:05Z07:00"), kind)
	}
	if len(st.Recent) > 0 {
		fmt.Fprintln(w, "recent hand-over events:")
	}
	for _, e := range st.Recent {
		mark := ""
		if e.Failed {
			mark = " FAILED"
		}
		fmt.Fprintf(w, "  %s boot %d %s%s: %s\n", e.Time.Format("2006-01-02 15:04:05Z07:00"), e.BootID, e.Kind, mark, e.Message)
	}
}

func printRBDPlan(w io.Writer, p rbd.PlanView) {
	fmt.Fprintf(w, "host %s, image %s (dry run: nothing was changed)\n", p.Host, p.Now.Plan.Image)
	if p.Booting {
		fmt.Fprintln(w, "a boot is in progress: a prepare from the host now would:")
		printPlan(w, p.Now.Plan)
		return
	}
	fmt.Fprintln(w, "no boot in progress: a prepare now would be refused (not-booting).")
	fmt.Fprintln(w, "if the host were booting now, a prepare would:")
	printPlan(w, p.IfBooting.Plan)
}

func printPlan(w io.Writer, p rbd.Plan) {
	if p.Refusal != nil {
		fmt.Fprintf(w, "  REFUSE (%s): %s\n", p.Refusal.Reason, p.Refusal.Message)
	} else if len(p.Actions) == 0 {
		fmt.Fprintln(w, "  do nothing: the image is ready to map")
	}
	for i, a := range p.Actions {
		fmt.Fprintf(w, "  %d. %s\n     because %s\n", i+1, a, a.Why)
	}
	for _, n := range p.Notes {
		fmt.Fprintf(w, "  note: %s\n", strings.TrimSpace(n))
	}
}
