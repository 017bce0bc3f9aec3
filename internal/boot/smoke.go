package boot

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"time"

	"netboot/internal/config"
)

// OSDStatus tells whether a Ceph OSD is up and in. The rbd part's go-ceph
// connection implements it; internal/boot never imports go-ceph.
type OSDStatus interface {
	OSDUpIn(ctx context.Context, id int) (up, in bool, err error)
}

// Smoke check defaults (config classes.<name>.smoke[]).
const (
	DefaultSmokeTimeout  = 10 * time.Second // one try
	DefaultSmokeDeadline = 2 * time.Minute  // all tries
	DefaultSmokeInterval = 2 * time.Second  // pause between tries
)

// Checker runs smoke checks against real peers.
type Checker struct {
	// OSD answers ceph-osd-up checks; nil makes them fail with that reason.
	OSD OSDStatus
	// Interval between tries; default DefaultSmokeInterval.
	Interval time.Duration
	// HTTP is the client of http checks; default a client without proxy.
	HTTP *http.Client

	mu sync.RWMutex // guards OSD after SetOSD
}

// SetOSD replaces the OSD status source (safe while checks run).
func (c *Checker) SetOSD(o OSDStatus) {
	c.mu.Lock()
	c.OSD = o
	c.mu.Unlock()
}

func (c *Checker) osd() OSDStatus {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.OSD
}

// seenFunc tells whether a netconsole line of this boot matched re.
type seenFunc func(re *regexp.Regexp) bool

// RunAll runs every check concurrently (all of them, no stop at the first
// failure), each retried until it passes or its deadline passes, and calls
// done for each result as it finishes. It returns the results in the
// checks' order.
func (c *Checker) RunAll(ctx context.Context, checks []config.SmokeCheck, vars map[string]string, seen seenFunc, done func(SmokeResult)) []SmokeResult {
	out := make([]SmokeResult, len(checks))
	var wg sync.WaitGroup
	for i, chk := range checks {
		wg.Go(func() {
			out[i] = c.Run(ctx, chk, vars, seen, 0)
			if done != nil {
				done(out[i])
			}
		})
	}
	wg.Wait()
	return out
}

// Run runs one check until it passes, its deadline passes, or maxTries
// (when > 0) tries were made.
func (c *Checker) Run(ctx context.Context, chk config.SmokeCheck, vars map[string]string, seen seenFunc, maxTries int) SmokeResult {
	start := time.Now()
	res := SmokeResult{Name: chk.Name, Kind: chk.Kind}
	target, args, expect, err := expand(chk, vars)
	res.Target = target
	if err != nil {
		res.Message, res.Attempts, res.Time = err.Error(), 0, time.Now()
		return res
	}
	deadline := orDefault(chk.Deadline.D(), DefaultSmokeDeadline)
	dl := time.Now().Add(deadline)
	dctx, cancel := context.WithDeadline(ctx, dl)
	defer cancel()
	var prev error
	for {
		res.Attempts++
		tctx, tcancel := context.WithTimeout(dctx, orDefault(chk.Timeout.D(), DefaultSmokeTimeout))
		err = c.try(tctx, chk.Kind, target, args, expect, seen)
		tcancel()
		if err != nil && prev != nil && (dctx.Err() != nil || time.Until(dl) < 50*time.Millisecond) {
			// The deadline cut this try short (the network's own timeout
			// may fire a moment before the context's): the try before
			// says more.
			err = prev
		}
		if err == nil || (maxTries > 0 && res.Attempts >= maxTries) || !c.pause(dctx) {
			break
		}
		prev = err
	}
	res.OK, res.Time, res.DurationMS = err == nil, time.Now(), time.Since(start).Milliseconds()
	res.Message = "ok"
	if err != nil {
		res.Message = err.Error()
	}
	return res
}

func (c *Checker) pause(ctx context.Context) bool {
	t := time.NewTimer(orDefault(c.Interval, DefaultSmokeInterval))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// expand renders the check's templates over the host's variables.
func expand(chk config.SmokeCheck, vars map[string]string) (target string, args []string, expect string, err error) {
	if target, err = render(chk.Target, vars); err != nil {
		return "", nil, "", fmt.Errorf("expand target of %s: %w", chk.Name, err)
	}
	for _, a := range chk.Args {
		s, err := render(a, vars)
		if err != nil {
			return target, nil, "", fmt.Errorf("expand args of %s: %w", chk.Name, err)
		}
		args = append(args, s)
	}
	if expect, err = render(chk.Expect, vars); err != nil {
		return target, nil, "", fmt.Errorf("expand expect of %s: %w", chk.Name, err)
	}
	return target, args, expect, nil
}

func render(s string, vars map[string]string) (string, error) {
	if !strings.Contains(s, "{{") {
		return s, nil
	}
	t, err := template.New("check").Option("missingkey=error").Parse(s)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, vars); err != nil {
		return "", err
	}
	return b.String(), nil
}

// try makes one attempt of a check.
func (c *Checker) try(ctx context.Context, kind, target string, args []string, expect string, seen seenFunc) error {
	switch kind {
	case "tcp":
		return tryTCP(ctx, target)
	case "http":
		return c.tryHTTP(ctx, target, expect, args)
	case "dns":
		return tryDNS(ctx, target, expect, args)
	case "ceph-osd-up":
		return c.tryOSD(ctx, target)
	case "netconsole":
		return tryNetconsole(target, seen)
	case "command":
		return tryCommand(ctx, target, args, expect)
	}
	return fmt.Errorf("unknown check kind %q", kind)
}

func tryTCP(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("tcp connect %s: %w", addr, err)
	}
	return conn.Close()
}

// tryHTTP GETs url; expect is "STATUS" or "STATUS BODY-REGEX" (default
// status 200). args may hold "status=NNN" and "body=REGEX" instead.
func (c *Checker) tryHTTP(ctx context.Context, url, expect string, args []string) error {
	wantStatus, bodyRE, err := parseHTTPExpect(expect, args)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("http GET %s: %w", url, err)
	}
	client := c.HTTP
	if client == nil {
		client = &http.Client{Transport: &http.Transport{Proxy: nil}}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("http GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("http GET %s: read body: %w", url, err)
	}
	if resp.StatusCode != wantStatus {
		return fmt.Errorf("http GET %s: status %d, want %d", url, resp.StatusCode, wantStatus)
	}
	if bodyRE != nil && !bodyRE.Match(body) {
		return fmt.Errorf("http GET %s: body does not match %q", url, bodyRE.String())
	}
	return nil
}

// parseHTTPExpect reads "200", "200 ok.*", or args status=/body=.
func parseHTTPExpect(expect string, args []string) (int, *regexp.Regexp, error) {
	status, body := "200", ""
	if expect != "" {
		s, b, _ := strings.Cut(expect, " ")
		status, body = s, b
	}
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "status="); ok {
			status = v
		} else if v, ok := strings.CutPrefix(a, "body="); ok {
			body = v
		}
	}
	code, err := strconv.Atoi(status)
	if err != nil || code < 100 || code > 599 {
		return 0, nil, fmt.Errorf("http check: %q is not an HTTP status", status)
	}
	if body == "" {
		return code, nil, nil
	}
	re, err := regexp.Compile(body)
	if err != nil {
		return 0, nil, fmt.Errorf("http check: body regex: %w", err)
	}
	return code, re, nil
}

// tryDNS resolves name at the server in args ("server=IP:PORT"; default
// the system resolver) and wants expect among the answers (any answer if
// expect is empty).
func tryDNS(ctx context.Context, name, expect string, args []string) error {
	r := net.DefaultResolver
	server := ""
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "server="); ok {
			server = v
		}
	}
	if server != "" {
		if _, _, err := net.SplitHostPort(server); err != nil {
			server = net.JoinHostPort(server, "53")
		}
		r = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		}}
	}
	query := name
	if server != "" && !strings.HasSuffix(query, ".") {
		// At an explicit server the name is absolute: no search domains
		// of this machine's resolv.conf.
		query += "."
	}
	answers, err := r.LookupHost(ctx, query)
	if err != nil {
		return fmt.Errorf("dns lookup %s at %s: %w", name, orSystem(server), err)
	}
	if expect != "" && !slices.Contains(answers, expect) {
		return fmt.Errorf("dns lookup %s at %s: answers %v, want %s", name, orSystem(server), answers, expect)
	}
	return nil
}

func orSystem(server string) string {
	if server == "" {
		return "the system resolver"
	}
	return server
}

func (c *Checker) tryOSD(ctx context.Context, target string) error {
	id, err := strconv.Atoi(strings.TrimPrefix(target, "osd."))
	if err != nil || id < 0 {
		return fmt.Errorf("ceph-osd-up: %q is not an OSD id", target)
	}
	osd := c.osd()
	if osd == nil {
		return fmt.Errorf("ceph-osd-up osd.%d: no Ceph connection is configured", id)
	}
	up, in, err := osd.OSDUpIn(ctx, id)
	switch {
	case err != nil:
		return fmt.Errorf("ceph-osd-up osd.%d: %w", id, err)
	case !up:
		return fmt.Errorf("ceph-osd-up osd.%d: down", id)
	case !in:
		return fmt.Errorf("ceph-osd-up osd.%d: up but out", id)
	}
	return nil
}

func tryNetconsole(pattern string, seen seenFunc) error {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return fmt.Errorf("netconsole check: %w", err)
	}
	if seen == nil || !seen(re) {
		return fmt.Errorf("netconsole: no line of this boot matched %q", pattern)
	}
	return nil
}

// tryCommand runs argv (no shell); it passes when it exits 0 and, if expect
// is set, its output matches the expect regex.
func tryCommand(ctx context.Context, name string, args []string, expect string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	text := strings.TrimSpace(out.String())
	if len(text) > 300 {
		text = text[len(text)-300:]
	}
	if err != nil {
		return fmt.Errorf("command %s: %w: %s", name, err, text)
	}
	if expect != "" {
		re, err := regexp.Compile(expect)
		if err != nil {
			return fmt.Errorf("command %s: expect regex: %w", name, err)
		}
		if !re.MatchString(out.String()) {
			return fmt.Errorf("command %s: output does not match %q: %s", name, expect, text)
		}
	}
	return nil
}
