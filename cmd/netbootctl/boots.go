package main

import (
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"netboot/internal/boot"
)

func init() { register(newBootsCmd) }

func newBootsCmd() *cobra.Command {
	var (
		limit  int
		bootID int64
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "boots HOST",
		Short: "List a host's boot attempts, or show one report (--boot N, or --boot 0 for the latest)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, host := newClient(), url.PathEscape(args[0])
			if cmd.Flags().Changed("boot") {
				path := "/api/v1/hosts/" + host + "/boots/latest"
				if bootID > 0 {
					path = "/api/v1/hosts/" + host + "/boots/" + strconv.FormatInt(bootID, 10)
				}
				var r boot.Report
				if err := c.do(cmd.Context(), "GET", path, nil, nil, &r); err != nil {
					return err
				}
				if asJSON {
					return writeJSONTo(cmd.OutOrStdout(), r)
				}
				printReport(cmd.OutOrStdout(), r)
				return nil
			}
			var reports []boot.Report
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if err := c.do(cmd.Context(), "GET", "/api/v1/hosts/"+host+"/boots", q, nil, &reports); err != nil {
				return err
			}
			if asJSON {
				return writeJSONTo(cmd.OutOrStdout(), reports)
			}
			printBoots(cmd.OutOrStdout(), reports)
			return nil
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 20, "show at most this many boots (0: all)")
	cmd.Flags().Int64Var(&bootID, "boot", 0, "show the full report of this boot id (0: the latest)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printBoots(w io.Writer, reports []boot.Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BOOT\tSEQ\tSTARTED\tDURATION\tSTAGE\tOUTCOME\tREASON")
	for _, r := range reports {
		end := r.Ended
		if end.IsZero() {
			end = r.Updated
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\n", r.BootID, r.Seq, r.Started.Local().Format(time.DateTime),
			end.Sub(r.Started).Round(time.Second), orDash(r.LastStage.String()), r.Outcome, orDash(r.Reason))
	}
	tw.Flush()
}

// printReport shows one report the way an operator reads it.
func printReport(w io.Writer, r boot.Report) {
	fmt.Fprintf(w, "host %s  boot %d (#%d)  class %s\n", r.Host, r.BootID, r.Seq, orDash(r.Class))
	fmt.Fprintf(w, "outcome %s", r.Outcome)
	if r.Reason != "" {
		fmt.Fprintf(w, " (%s)", r.Reason)
	}
	fmt.Fprintf(w, "  last stage %s\n", orDash(r.LastStage.String()))
	if r.Message != "" {
		fmt.Fprintf(w, "  %s\n", r.Message)
	}
	fmt.Fprintln(w, "stages:")
	for _, s := range r.Stages {
		deadline := r.Deadlines[s.Stage.String()]
		fmt.Fprintf(w, "  %-13s %s  %8s  (deadline %s, via %s)\n", s.Stage, s.At.Local().Format("15:04:05.000"),
			(time.Duration(s.DurationMS) * time.Millisecond).String(), orDash(deadline), s.Via)
	}
	if f := r.Failure; f != nil {
		fmt.Fprintf(w, "failure at %s: %s\n", f.Stage, f.Message)
		if f.Signature != "" {
			fmt.Fprintf(w, "  signature %s: %s\n  hint: %s\n", f.Signature, f.Explain, f.Hint)
		}
		for _, l := range f.Excerpt {
			mark := "  "
			if l == f.Line {
				mark = "> "
			}
			fmt.Fprintf(w, "  %s%s\n", mark, l)
		}
	}
	for _, a := range r.RBD {
		fmt.Fprintf(w, "rbd %s %s %s\n", a.Kind, a.Message, fmtAttrs(a.Attrs))
	}
	for _, s := range r.Smoke {
		state := "pass"
		if !s.OK {
			state = "FAIL"
		}
		fmt.Fprintf(w, "smoke %-16s %s  %s (%d tries)\n", s.Name, state, s.Message, s.Attempts)
	}
	if len(r.Regressions) > 0 {
		fmt.Fprintf(w, "regressions: %s\n", strings.Join(r.Regressions, ", "))
	}
}

func fmtAttrs(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, " ")
}
