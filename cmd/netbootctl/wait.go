package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"netboot/internal/boot"
	"netboot/internal/store"
)

func init() { register(newWaitCmd) }

// Exit codes of netbootctl wait (README "netbootctl wait").
const (
	exitSucceeded = 0 // the boot succeeded (smoke checks passed)
	exitFailed    = 1 // failed, or a smoke check regressed
	exitNoOutcome = 2 // stuck, skipped, or no outcome before --timeout
	exitCannotAsk = 3 // netbootd could not be asked (or the host is unknown)
)

// pollMax bounds one long-poll request; the wait repeats it until --timeout.
const pollMax = time.Minute

// waitResult is the outcome of waiting for one host.
type waitResult struct {
	Host   string       `json:"host"`
	Code   int          `json:"exit_code"`
	Status string       `json:"status"` // succeeded, failed, regression, stuck, skipped, timeout, error
	Error  string       `json:"error,omitempty"`
	Report *boot.Report `json:"report,omitempty"`
}

func newWaitCmd() *cobra.Command {
	var (
		since   string
		timeout time.Duration
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "wait HOST [HOST...]",
		Short: "Wait for the outcome of each host's boot that started after --since",
		Long: `Wait until each host's boot attempt that started at or after --since has an
outcome, long-polling netbootd (no busy loop). Exit status (the worst over
all hosts): 0 succeeded (smoke checks passed), 1 failed or regression (the
reason is printed), 2 stuck, skipped (an announced reboot never started) or
no outcome before --timeout, 3 netbootd could not be asked.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, hosts []string) error {
			if since == "" {
				// No default: "now" would miss a boot that started before
				// the call, "ever" would answer with the previous boot.
				return exitCode{code: exitCannotAsk, msg: "--since is required (the time of `netbootctl reboot-expect`, or just before the reboot)"}
			}
			t, err := parseSince(since, time.Now())
			if err != nil {
				return exitCode{code: exitCannotAsk, msg: err.Error()}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			results := waitAll(ctx, newClient(), hosts, t)
			return reportWait(cmd.OutOrStdout(), cmd.ErrOrStderr(), results, asJSON)
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "required: only boots that started at or after this time (RFC 3339, or a duration back like 10m)")
	cmd.Flags().DurationVar(&timeout, "timeout", 15*time.Minute, "give up (exit 2) after this long")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report(s) as JSON")
	return cmd
}

// waitAll waits for every host concurrently.
func waitAll(ctx context.Context, c *client, hosts []string, since time.Time) []waitResult {
	out := make([]waitResult, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Go(func() { out[i] = waitHost(ctx, c, h, since) })
	}
	wg.Wait()
	return out
}

// waitHost long-polls /boots/latest until the boot has a final outcome or
// ctx ends. Connection errors are retried a few times (netbootd may be
// restarting) before giving up with exit code 3.
func waitHost(ctx context.Context, c *client, host string, since time.Time) waitResult {
	var last *boot.Report
	failures := 0
	for {
		q := url.Values{"since": {since.UTC().Format(time.RFC3339Nano)}}
		if wait, ok := pollWait(ctx); !ok {
			return timeoutResult(host, last)
		} else if wait > 0 {
			q.Set("wait", wait.Round(time.Millisecond).String())
		}
		var rep boot.Report
		err := c.do(ctx, "GET", "/api/v1/hosts/"+url.PathEscape(host)+"/boots/latest", q, nil, &rep)
		var ae *apiError
		switch {
		case err == nil:
			failures = 0
			last = &rep
			if rep.Terminal() {
				return outcomeResult(host, rep)
			}
		case ctx.Err() != nil:
			return timeoutResult(host, last)
		case errors.As(err, &ae) && ae.Status == 404 && ae.Msg == "no such boot":
			failures = 0 // no boot since `since` yet
		case errors.As(err, &ae):
			return waitResult{Host: host, Code: exitCannotAsk, Status: "error", Error: err.Error()}
		default:
			failures++
			if failures >= 3 {
				return waitResult{Host: host, Code: exitCannotAsk, Status: "error", Error: err.Error()}
			}
			select {
			case <-ctx.Done():
				return timeoutResult(host, last)
			case <-time.After(time.Second):
			}
		}
	}
}

// pollWait is how long the server may hold one long-poll: a bit less than
// the time left, so that its answer arrives before our own deadline (0:
// ask without waiting; false: no time left).
func pollWait(ctx context.Context) (time.Duration, bool) {
	dl, ok := ctx.Deadline()
	if !ok {
		return pollMax, true
	}
	left := time.Until(dl)
	if left <= 0 {
		return 0, false
	}
	wait := min(pollMax, left*9/10)
	if wait < 50*time.Millisecond {
		wait = 0
	}
	return wait, true
}

func timeoutResult(host string, last *boot.Report) waitResult {
	return waitResult{Host: host, Code: exitNoOutcome, Status: "timeout", Report: last,
		Error: "no outcome before the timeout"}
}

// outcomeResult maps a final report to its exit code.
func outcomeResult(host string, r boot.Report) waitResult {
	res := waitResult{Host: host, Report: &r, Status: r.Outcome}
	switch r.Outcome {
	case store.OutcomeSucceeded:
		res.Code = exitSucceeded
	case store.OutcomeFailed:
		res.Code = exitFailed
		if r.Regression() {
			res.Status = "regression"
		}
	default: // stuck, skipped
		res.Code = exitNoOutcome
	}
	return res
}

// reportWait prints the results and returns the worst exit code.
func reportWait(stdout, stderr io.Writer, results []waitResult, asJSON bool) error {
	worst := 0
	for _, r := range results {
		worst = max(worst, r.Code)
	}
	if asJSON {
		var v any = results
		if len(results) == 1 {
			v = results[0]
		}
		if err := writeJSONTo(stdout, v); err != nil {
			return exitCode{code: exitCannotAsk, msg: err.Error()}
		}
	} else {
		for _, r := range results {
			w := stdout
			if r.Code != 0 {
				w = stderr
			}
			fmt.Fprintln(w, describeWait(r))
		}
	}
	if worst == 0 {
		return nil
	}
	return exitCode{code: worst}
}

// describeWait is the one-line human form of a result.
func describeWait(r waitResult) string {
	rep := r.Report
	switch {
	case r.Status == "error":
		return fmt.Sprintf("%s: could not ask netbootd: %s", r.Host, r.Error)
	case r.Status == "timeout" && rep == nil:
		return fmt.Sprintf("%s: timeout: no boot started since --since", r.Host)
	case r.Status == "timeout":
		return fmt.Sprintf("%s: timeout: boot %d still %s at %s", r.Host, rep.BootID, rep.Outcome, rep.LastStage)
	case r.Code == exitSucceeded:
		return fmt.Sprintf("%s: succeeded: boot %d ready after %s", r.Host, rep.BootID, rep.Ended.Sub(rep.Started).Round(time.Second))
	}
	s := fmt.Sprintf("%s: %s: boot %d", r.Host, r.Status, rep.BootID)
	if rep.LastStage != 0 {
		s += " at " + rep.LastStage.String()
	}
	if rep.Failure != nil && rep.Failure.Signature != "" {
		s += " [" + rep.Failure.Signature + "]"
	}
	if rep.Message != "" {
		s += ": " + rep.Message
	}
	if rep.Failure != nil && rep.Failure.Hint != "" {
		s += " (hint: " + rep.Failure.Hint + ")"
	}
	return s
}
