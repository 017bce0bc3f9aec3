package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"netboot/internal/boot"
	"netboot/internal/store"
)

func init() { register(newLogsCmd) }

type logsOptions struct {
	follow bool
	boot   string
	since  string
	grep   string
	level  string
	limit  int
	asJSON bool
}

func newLogsCmd() *cobra.Command {
	var o logsOptions
	cmd := &cobra.Command{
		Use:   "logs HOST",
		Short: "Show a host's kernel log (netconsole), latest boot by default",
		Long: `Show the netconsole lines of HOST (an inventory name, or unknown:<ip>).

By default the latest boot is shown. --boot N picks a boot id (as listed by
"netbootctl logs HOST --boot list" or "netbootctl boots HOST"), 0 the latest,
-1 the one before it, and so on; --boot all shows every boot. With -f the
command keeps printing new lines as they arrive, across reboots.

Stage markers (Linux version, command line, init, switch root, targets) and
lines matching a failure signature are highlighted; colour is used only on a
terminal (and never with NO_COLOR set).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLogs(cmd.Context(), cmd.OutOrStdout(), args[0], o)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.follow, "follow", "f", false, "keep printing new lines")
	f.StringVar(&o.boot, "boot", "", "boot id, 0 latest, -N N boots before the latest, all, or list")
	f.StringVar(&o.since, "since", "", "only lines received after this (duration back from now like 10m, or RFC 3339)")
	f.StringVar(&o.grep, "grep", "", "only lines matching this regular expression")
	f.StringVar(&o.level, "level", "", "only lines of this level or more severe (0-7, emerg … debug)")
	f.IntVar(&o.limit, "limit", 0, "only the last N lines")
	f.BoolVar(&o.asJSON, "json", false, "print one JSON object per line")
	return cmd
}

func runLogs(ctx context.Context, w io.Writer, host string, o logsOptions) error {
	c := newClient()
	path := "/api/v1/hosts/" + url.PathEscape(host) + "/logs"
	if o.boot == "list" {
		return listLogBoots(ctx, c, w, path+"/boots", o.asJSON)
	}
	q := url.Values{}
	if o.boot != "" {
		q.Set("boot", o.boot)
	}
	if o.since != "" {
		since, err := parseSince(o.since, time.Now())
		if err != nil {
			return err
		}
		q.Set("since", since.Format(time.RFC3339Nano))
	}
	if o.grep != "" {
		if _, err := regexp.Compile(o.grep); err != nil {
			return fmt.Errorf("--grep: %w", err)
		}
		q.Set("grep", o.grep)
	}
	setIf(q, "level", o.level)
	if o.limit > 0 {
		q.Set("limit", strconv.Itoa(o.limit))
	}
	if o.follow {
		q.Set("follow", "1")
	}
	resp, err := c.send(ctx, "GET", path, q, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	p := newLinePrinter(w, o.asJSON)
	if o.follow {
		return readEvents(ctx, resp.Body, p)
	}
	dec := json.NewDecoder(resp.Body)
	for n := 0; ; n++ {
		var l store.LogLine
		if err := dec.Decode(&l); err == io.EOF {
			if n == 0 && !o.asJSON {
				fmt.Fprintf(os.Stderr, "netbootctl: no netconsole lines for %s match (boot %q)\n", host, o.boot)
			}
			return nil
		} else if err != nil {
			return fmt.Errorf("read log lines: %w", err)
		}
		p.print(l)
	}
}

func setIf(q url.Values, k, v string) {
	if v != "" {
		q.Set(k, v)
	}
}

func listLogBoots(ctx context.Context, c *client, w io.Writer, path string, asJSON bool) error {
	var boots []store.LogBoot
	if err := c.do(ctx, "GET", path, nil, nil, &boots); err != nil {
		return err
	}
	if asJSON {
		return writeJSONTo(w, boots)
	}
	fmt.Fprintf(w, "%-8s %-24s %-24s %s\n", "BOOT", "FIRST LINE", "LAST LINE", "LINES")
	for _, b := range boots {
		fmt.Fprintf(w, "%-8d %-24s %-24s %d\n", b.BootID, b.First.Local().Format(time.DateTime), b.Last.Local().Format(time.DateTime), b.Lines)
	}
	return nil
}

// readEvents prints the "line" events of a Server-Sent Events stream.
func readEvents(ctx context.Context, r io.Reader, p *linePrinter) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data := strings.TrimPrefix(line, "data: ")
			if event == "lagged" {
				fmt.Fprintf(os.Stderr, "netbootctl: lines missed (follower too slow): %s\n", data)
				continue
			}
			var l store.LogLine
			if err := json.Unmarshal([]byte(data), &l); err != nil {
				return fmt.Errorf("read log stream: %w", err)
			}
			p.print(l)
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read log stream: %w", err)
	}
	return nil
}

// stageMarkers are the success-path lines worth spotting in a boot log
// (research/netconsole-anchors.md §4 "Stage markers").
var stageMarkers = regexp.MustCompile(`^(Linux version |Kernel command line: |Run \S+ as init process|Freeing unused kernel image|netconsole: network logging started|nbinit[:\[]|Reached target |Starting Switch Root|.*\bswitch.?root\b)`)

const (
	ansiReset  = "\x1b[0m"
	ansiRed    = "\x1b[1;31m"
	ansiYellow = "\x1b[33m"
	ansiCyan   = "\x1b[1;36m"
	ansiDim    = "\x1b[2m"
)

// linePrinter formats log lines for people (or as JSON).
type linePrinter struct {
	w      io.Writer
	asJSON bool
	color  bool
	cat    *boot.Catalogue
	boot   int64
	first  bool
}

func newLinePrinter(w io.Writer, asJSON bool) *linePrinter {
	cat, _ := boot.NewCatalogue(nil)
	return &linePrinter{w: w, asJSON: asJSON, color: useColor(w), cat: cat, first: true}
}

func useColor(w io.Writer) bool {
	if os.Getenv("NO_COLOR") != "" {
		return false
	}
	f, ok := w.(*os.File)
	return ok && isatty.IsTerminal(f.Fd())
}

var levelNames = []string{"emerg", "alert", "crit", "err", "warn", "notice", "info", "debug"}

func (p *linePrinter) print(l store.LogLine) {
	if p.asJSON {
		b, _ := json.Marshal(l)
		fmt.Fprintf(p.w, "%s\n", b)
		return
	}
	if p.first || l.BootID != p.boot {
		fmt.Fprintf(p.w, "%s── %s boot %d ──%s\n", p.paint(ansiDim), l.Host, l.BootID, p.paint(ansiReset))
		p.boot, p.first = l.BootID, false
	}
	kt := "            "
	if l.KTime >= 0 {
		kt = fmt.Sprintf("[%5d.%06d]", l.KTime/1e6, l.KTime%1e6)
	}
	lvl := "      "
	if l.Level >= 0 && int(l.Level) < len(levelNames) {
		lvl = fmt.Sprintf("%-6s", levelNames[l.Level])
	}
	color, tag := p.classify(l)
	fmt.Fprintf(p.w, "%s %s %s %s%s%s%s\n", l.Time.Local().Format("15:04:05.000"), kt, lvl, p.paint(color), l.Text, p.paint(ansiReset), tag)
}

// classify returns the highlight colour and a tag for signature hits.
func (p *linePrinter) classify(l store.LogLine) (string, string) {
	if p.cat != nil {
		if sig, ok := p.cat.Match(l.Text); ok {
			tag := "  ◀ " + sig.Name
			if !p.color {
				tag = "  <-- signature " + sig.Name
			}
			return ansiRed, tag
		}
	}
	if stageMarkers.MatchString(l.Text) {
		if !p.color {
			return "", "  <-- stage"
		}
		return ansiCyan, ""
	}
	if l.Level >= 0 && l.Level <= 4 {
		return ansiYellow, ""
	}
	return "", ""
}

func (p *linePrinter) paint(code string) string {
	if !p.color || code == "" {
		return ""
	}
	return code
}
