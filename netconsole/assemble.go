package netconsole

import (
	"bytes"
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"netboot/internal/event"
	"netboot/internal/store"
)

// Tracker is the part of the boot tracker (internal/boot) the collector
// needs: which boot attempt a host is in, and a synchronous way to record
// the first kernel line of a boot and learn the boot it joined.
type Tracker interface {
	Current(host string) (bootID int64, ok bool)
	Record(ctx context.Context, e event.Event) (event.Event, error)
}

// AssemblerConfig bounds the assembler's memory and sets its timeouts.
// Zero values mean the documented defaults.
type AssemblerConfig struct {
	// FragTimeout flushes an incomplete fragmented record (as a truncated
	// line, counted as lost bytes). Default 2s.
	FragTimeout time.Duration
	// MaxFragsPerHost bounds records in reassembly per host; the oldest is
	// flushed truncated when exceeded. Default 16.
	MaxFragsPerHost int
	// MaxReassemblyBytes bounds reassembly buffers over all hosts. Pieces
	// that would exceed it are dropped and counted. Default 16 MiB.
	MaxReassemblyBytes int64
	// TrackerPoll is how often a host's current boot is re-read from the
	// tracker to notice attempts it opened (DHCP/TFTP). Default 100ms.
	TrackerPoll time.Duration
	// MergeWindow is how long a timestamped plain line is held back while
	// the host's boot has no extended stream yet, so that an extended copy
	// of it arriving later (another socket, another reader) replaces it.
	// Default 1s; negative: plain lines are emitted at once (copies are
	// then merged only through the recent-lines window).
	MergeWindow time.Duration
	// MaxHeldLines bounds the plain lines held back per host; the oldest
	// is emitted when exceeded. Held bytes over all hosts count against
	// MaxReassemblyBytes too (over it, lines are emitted at once).
	// Default 1024.
	MaxHeldLines int
}

func (c *AssemblerConfig) setDefaults() {
	if c.FragTimeout <= 0 {
		c.FragTimeout = 2 * time.Second
	}
	if c.MaxFragsPerHost <= 0 {
		c.MaxFragsPerHost = 16
	}
	if c.MaxReassemblyBytes <= 0 {
		c.MaxReassemblyBytes = 16 << 20
	}
	if c.TrackerPoll <= 0 {
		c.TrackerPoll = 100 * time.Millisecond
	}
	if c.MergeWindow == 0 {
		c.MergeWindow = time.Second
	}
	if c.MaxHeldLines <= 0 {
		c.MaxHeldLines = 1024
	}
}

// Result says what became of one datagram (the "result" metric label).
type Result string

// Datagram results.
const (
	ResultParsed      Result = "parsed"       // produced lines directly
	ResultReassembled Result = "reassembled"  // a piece of a longer record
	ResultDropped     Result = "dropped"      // discarded (duplicate, over a bound)
	ResultUnknownHost Result = "unknown_host" // from a source the resolver does not know (kept)
	ResultMalformed   Result = "malformed"    // bad header; kept as a raw line
)

var results = []Result{ResultParsed, ResultReassembled, ResultDropped, ResultUnknownHost, ResultMalformed}

// Assembler turns parsed datagrams into log lines, per host.
type Assembler struct {
	cfg     AssemblerConfig
	log     *zap.Logger
	tracker Tracker    // may be nil: boots are numbered locally
	events  event.Sink // banner events
	m       *Metrics   // may be nil
	last    LastBootFunc
	fragMem atomic.Int64
	heldMem atomic.Int64 // bytes of plain lines held back (merge window)

	mu      sync.Mutex
	emitted map[string]int64 // host → boot whose KernelLine was recorded
}

// LastBootFunc returns the highest boot id stored for host (0 if none); it
// seeds local boot numbering when there is no tracker.
type LastBootFunc func(host string) int64

// NewAssembler returns an assembler. tracker, events, m and last may be nil.
func NewAssembler(cfg AssemblerConfig, log *zap.Logger, tracker Tracker, events event.Sink, m *Metrics, last LastBootFunc) *Assembler {
	cfg.setDefaults()
	if events == nil {
		events = event.Discard
	}
	return &Assembler{cfg: cfg, log: log, tracker: tracker, events: events, m: m, last: last, emitted: map[string]int64{}}
}

// hostState is the per-host state. Its fields are guarded by mu.
type hostState struct {
	mu      sync.Mutex
	name    string
	unknown bool

	started    bool
	boot       int64
	trackerCur int64
	trackerAt  time.Time
	ext        stream
	plain      stream
	extFirstTS int64 // kernel time of this boot's first extended record, -1

	held   []store.LogLine // plain lines waiting for a possible extended copy
	recent recentPlain     // plain lines emitted lately (late extended copies are dropped)

	frags   []*fragment
	pending []byte // plain record split over datagrams
	pendAt  time.Time
}

type stream struct {
	have bool
	seq  uint64
	ts   int64
}

func newHostState(name string, unknown bool) *hostState {
	return &hostState{name: name, unknown: unknown, extFirstTS: -1}
}

// lineBuf collects the lines produced while one batch is processed.
type lineBuf struct {
	lines []store.LogLine
	tmp   []byte
	tally tally
}

// Process handles one datagram of host h received at now. Lines are
// appended to out. The caller holds no lock; Process takes h's.
func (a *Assembler) Process(h *hostState, payload []byte, now time.Time, out *lineBuf) Result {
	h.mu.Lock()
	defer h.mu.Unlock()
	a.expireFrags(h, now, out)
	var d Datagram
	if err := ParseDatagram(payload, &d); err != nil {
		a.malformed(h, payload, now, out, err)
		return ResultMalformed
	}
	var r Result
	if d.Format == FormatExtended {
		r = a.extended(h, &d, now, out)
	} else {
		r = a.plainDatagram(h, payload, now, out)
	}
	if h.unknown && r != ResultDropped {
		return ResultUnknownHost
	}
	return r
}

func (a *Assembler) malformed(h *hostState, payload []byte, now time.Time, out *lineBuf, err error) {
	if a.log != nil {
		a.log.Debug("netconsole: malformed datagram kept as raw line", zap.String("host", h.name), zap.Error(err))
	}
	text := strconv.Quote(string(payload[:min(len(payload), MaxRecord)]))
	a.emitLine(h, now, out, store.LogLine{Seq: -1, KTime: -1, Level: -1, Text: text, Flags: store.LogFlagTruncated}, false, "")
}

// extended handles one extended datagram (fragment or whole record).
func (a *Assembler) extended(h *hostState, d *Datagram, now time.Time, out *lineBuf) Result {
	body := d.Body
	flags := store.LogFlagExtended
	if d.Frag {
		full, done, r := a.addFragment(h, d, now)
		if !done {
			return r
		}
		body, flags = full, flags|store.LogFlagReassembled
		a.extRecord(h, d, body, flags, now, out)
		return ResultReassembled
	}
	if h.ext.have && d.Seq == h.ext.seq && !d.Cont {
		return ResultDropped // duplicate datagram
	}
	if !a.extRecord(h, d, body, flags, now, out) {
		return ResultDropped // its plain copy was stored already
	}
	return ResultParsed
}

// extRecord turns a whole extended record body into a line. It reports
// whether the line was kept (not when its plain copy was emitted already).
func (a *Assembler) extRecord(h *hostState, d *Datagram, body []byte, flags uint8, now time.Time, out *lineBuf) bool {
	text, dict, _ := bytes.Cut(body, []byte("\n"))
	newBoot, reason := false, ""
	switch {
	case h.ext.have && d.Seq < h.ext.seq && (d.Seq == 0 || !reordered(h.ext, d)):
		newBoot, reason = true, "seq-reset"
	case h.ext.have && d.Seq > h.ext.seq && d.TSUsec < h.ext.ts-reorderUsec:
		newBoot, reason = true, "time-backwards"
	case h.ext.have && isBanner(text):
		newBoot, reason = true, "banner"
	}
	if d.Cont {
		flags |= store.LogFlagCont
	}
	out.tmp = Unescape(out.tmp[:0], text)
	l := store.LogLine{
		Seq: int64(d.Seq), KTime: d.TSUsec, Level: int8(d.Level), Facility: int8(min(d.Facility, 127)),
		Flags: flags, Text: string(out.tmp),
	}
	l.Dict = dictString(out, dict)
	if newBoot {
		a.newSession(h, reason, out)
	}
	a.prepareLine(h, now, out, &l, isBanner(text), reason)
	h.ext = stream{have: true, seq: d.Seq, ts: d.TSUsec}
	if h.extFirstTS < 0 || d.TSUsec < h.extFirstTS {
		// The extended stream carries every record from here on (a
		// reordered earlier record moves the hand-over back).
		h.extFirstTS = d.TSUsec
	}
	a.settleHeld(h, out)
	if h.recent.take(l.KTime, l.Text) {
		return false
	}
	out.lines = append(out.lines, l)
	return true
}

// Reordering window: a record at most reorderSeq sequence numbers and
// reorderUsec of kernel time behind the newest one is a late arrival (UDP
// reordering, a fragmented record completing late), not a new boot. Real
// early-boot logs also step back in time by a few ms when the clocksource
// changes (seen under QEMU: 0.040000 then 0.004702).
const (
	reorderSeq  = 512
	reorderUsec = 1_000_000
)

func reordered(last stream, d *Datagram) bool {
	return last.seq-d.Seq <= reorderSeq && last.ts-d.TSUsec <= reorderUsec
}

// dictString unescapes the continuation lines (" KEY=VALUE\n" each) into
// "KEY=VALUE\n…" without the trailing newline.
func dictString(out *lineBuf, dict []byte) string {
	dict = bytes.TrimRight(dict, "\n")
	if len(dict) == 0 {
		return ""
	}
	start := len(out.tmp)
	for len(dict) > 0 {
		var line []byte
		line, dict, _ = bytes.Cut(dict, []byte("\n"))
		if len(out.tmp) > start {
			out.tmp = append(out.tmp, '\n')
		}
		out.tmp = Unescape(out.tmp, bytes.TrimPrefix(line, []byte(" ")))
	}
	return string(out.tmp[start:])
}

func isBanner(text []byte) bool { return bytes.HasPrefix(text, []byte("Linux version ")) }

// addFragment stores one ncfrag piece. It returns the whole body once
// complete.
func (a *Assembler) addFragment(h *hostState, d *Datagram, now time.Time) ([]byte, bool, Result) {
	var f *fragment
	idx := -1
	for i, x := range h.frags {
		if x.seq == d.Seq {
			f, idx = x, i
			break
		}
	}
	if f == nil {
		if h.ext.have && d.Seq == h.ext.seq {
			return nil, false, ResultDropped // piece of a record already completed
		}
		f = newFragment(d, now)
		if a.fragMem.Add(int64(f.size())) > a.cfg.MaxReassemblyBytes {
			a.fragMem.Add(-int64(f.size()))
			a.m.fragLost("memory", d.FragTotal)
			return nil, false, ResultDropped
		}
		h.frags = append(h.frags, f)
		idx = len(h.frags) - 1
	}
	filled, conflict := f.add(d)
	if conflict || filled == 0 {
		return nil, false, ResultDropped
	}
	if !f.complete() {
		return nil, false, ResultReassembled
	}
	h.frags = append(h.frags[:idx], h.frags[idx+1:]...)
	a.fragMem.Add(-int64(f.size()))
	if f.claimed > f.total {
		a.m.fragLost("too-long", f.claimed-f.total)
	}
	return f.buf, true, ResultReassembled
}

// expireFrags flushes records whose pieces stopped coming, and evicts the
// oldest when a host has too many open; a plain piece left pending past the
// timeout is flushed too.
func (a *Assembler) expireFrags(h *hostState, now time.Time, out *lineBuf) {
	for len(h.frags) > 0 {
		f := h.frags[0]
		over := len(h.frags) > a.cfg.MaxFragsPerHost
		if !over && now.Sub(f.started) < a.cfg.FragTimeout {
			break
		}
		h.frags = h.frags[1:]
		why := "timeout"
		if over {
			why = "evicted"
		}
		a.flushFragment(h, f, now, out, why)
	}
	if h.pending != nil && now.Sub(h.pendAt) >= a.cfg.FragTimeout {
		a.plainRecord(h, h.pending, now, out, store.LogFlagReassembled|store.LogFlagTruncated)
		h.pending = nil
	}
	a.expireHeld(h, now, out)
}

func (a *Assembler) flushFragment(h *hostState, f *fragment, now time.Time, out *lineBuf, why string) {
	a.fragMem.Add(-int64(f.size()))
	a.m.fragLost(why, f.missing())
	if a.log != nil {
		a.log.Info("netconsole: incomplete record stored truncated", zap.String("host", h.name),
			zap.Uint64("seq", f.seq), zap.Int("missing_bytes", f.missing()), zap.String("why", why))
	}
	d := f.hdr
	a.extRecord(h, &d, f.assembled(), store.LogFlagExtended|store.LogFlagReassembled|store.LogFlagTruncated, now, out)
}

// plainDatagram handles a plain datagram: joins the pieces of records the
// kernel split at 1000 bytes, then emits one line per text line.
func (a *Assembler) plainDatagram(h *hostState, b []byte, now time.Time, out *lineBuf) Result {
	if h.pending != nil {
		if _, _, ok := splitPlainPrefix(b); ok {
			a.plainRecord(h, h.pending, now, out, store.LogFlagReassembled|store.LogFlagTruncated)
			h.pending = nil
		} else {
			h.pending = append(h.pending, b[:min(len(b), MaxRecord-len(h.pending))]...)
			ended := bytes.HasSuffix(b, []byte("\n"))
			if !ended && len(h.pending) < MaxRecord {
				return ResultReassembled
			}
			flags := store.LogFlagReassembled
			if !ended {
				flags |= store.LogFlagTruncated // cut at MaxRecord
			}
			a.plainRecord(h, h.pending, now, out, flags)
			h.pending = nil
			return ResultReassembled
		}
	}
	if !bytes.HasSuffix(b, []byte("\n")) && len(b) >= MaxDatagram {
		h.pending = append(make([]byte, 0, 2*len(b)), b...)
		h.pendAt = now
		return ResultReassembled
	}
	if !a.plainRecord(h, b, now, out, 0) {
		return ResultDropped
	}
	return ResultParsed
}

// plainRecord emits every line of a plain record; it reports whether any
// line was kept (lines duplicated by the extended stream are not).
func (a *Assembler) plainRecord(h *hostState, rec []byte, now time.Time, out *lineBuf, flags uint8) bool {
	kept := false
	rec = bytes.TrimRight(rec, "\n")
	for len(rec) > 0 || !kept {
		var line []byte
		line, rec, _ = bytes.Cut(rec, []byte("\n"))
		if a.plainLine(h, line, now, out, flags) {
			kept = true
		}
		if len(rec) == 0 {
			break
		}
	}
	return kept
}

func (a *Assembler) plainLine(h *hostState, line []byte, now time.Time, out *lineBuf, flags uint8) bool {
	ts, text, _ := splitPlainPrefix(line)
	if ts >= 0 && h.extFirstTS >= 0 && ts >= h.extFirstTS {
		return false // the extended target carries this line with more detail
	}
	newBoot, reason := false, ""
	switch {
	case ts >= 0 && h.plain.have && ts < h.plain.ts-reorderUsec:
		newBoot, reason = true, "time-backwards"
	case h.started && isBanner(text) && h.plain.have:
		newBoot, reason = true, "banner"
	}
	if newBoot {
		a.newSession(h, reason, out)
	}
	l := store.LogLine{Seq: -1, KTime: ts, Level: -1, Flags: flags, Text: string(text)}
	a.prepareLine(h, now, out, &l, isBanner(text), reason)
	a.emitPlain(h, out, l)
	if ts >= 0 {
		h.plain = stream{have: true, ts: ts}
	} else {
		h.plain.have = true
	}
	return true
}

// newSession marks the start of a new boot found in the stream itself;
// the boot id is decided when its first line is emitted. Plain lines held
// back belong to the previous boot: they are emitted to out.
func (a *Assembler) newSession(h *hostState, reason string, out *lineBuf) {
	if a.log != nil {
		a.log.Info("netconsole: new boot detected", zap.String("host", h.name), zap.String("reason", reason), zap.Int64("previous_boot", h.boot))
	}
	a.m.session(reason)
	h.started = false
	h.ext, h.plain = stream{}, stream{}
	h.extFirstTS = -1
	a.releaseHeld(h, out, len(h.held))
	h.recent = recentPlain{}
}

// emitLine assigns the line to the host's current boot (opening one if
// needed), emits the boot events and appends it to out.
func (a *Assembler) emitLine(h *hostState, now time.Time, out *lineBuf, l store.LogLine, banner bool, reason string) {
	a.prepareLine(h, now, out, &l, banner, reason)
	a.releaseHeld(h, out, len(h.held))
	out.lines = append(out.lines, l)
}

// prepareLine assigns the line to the host's current boot (opening one if
// needed) and emits the boot events; the caller appends it to out.
func (a *Assembler) prepareLine(h *hostState, now time.Time, out *lineBuf, l *store.LogLine, banner bool, reason string) {
	a.checkTracker(h, now, out)
	bannerDone := false
	if !h.started {
		bannerDone = a.openBoot(h, now, l, banner, reason)
	}
	l.Time, l.Host, l.BootID = now, h.name, h.boot
	if banner {
		l.Flags |= store.LogFlagBanner
		if !bannerDone {
			a.events.Emit(bannerEvent(h.name, now, l.Text, h.boot))
		}
	}
}

// checkTracker starts a new session when the tracker opened a new boot
// attempt for the host (DHCP/TFTP of the next boot).
func (a *Assembler) checkTracker(h *hostState, now time.Time, out *lineBuf) {
	if a.tracker == nil || !h.started || now.Sub(h.trackerAt) < a.cfg.TrackerPoll {
		return
	}
	h.trackerAt = now
	cur, ok := a.tracker.Current(h.name)
	if ok && cur != h.trackerCur {
		h.trackerCur = cur
		if cur != h.boot {
			a.newSession(h, "tracker", out)
		}
	}
}

func bannerEvent(host string, at time.Time, text string, boot int64) event.Event {
	return event.Event{Time: at, Host: host, BootID: boot, Kind: event.KernelBanner, Stage: event.StageKernelUp, Message: text}
}

// openBoot decides the boot id for a new session and records the
// KernelLine event for its first line (once per boot). When that line is
// the "Linux version" banner, the banner is recorded first: the tracker
// opens a new attempt on it when the host rebooted without a DHCP it saw.
// It reports whether it recorded the banner.
func (a *Assembler) openBoot(h *hostState, now time.Time, first *store.LogLine, banner bool, reason string) bool {
	if reason == "" {
		reason = "first-line"
	}
	target := int64(0)
	if a.tracker != nil {
		if cur, ok := a.tracker.Current(h.name); ok {
			h.trackerCur, h.trackerAt = cur, now
			if cur != h.boot || h.boot == 0 {
				target = cur
			}
		}
	}
	bannerDone := false
	if a.tracker != nil && banner {
		e, err := a.tracker.Record(context.Background(), bannerEvent(h.name, now, first.Text, 0))
		if err == nil && e.BootID != 0 {
			target, h.trackerCur = e.BootID, e.BootID
		}
		bannerDone = err == nil
		reason = "banner"
	}
	a.mu.Lock()
	done := target != 0 && a.emitted[h.name] == target
	a.mu.Unlock()
	boot := target
	if !done {
		boot = a.recordFirstLine(h, now, first, reason, target)
	}
	h.boot, h.started = boot, true
	a.mu.Lock()
	a.emitted[h.name] = boot
	a.mu.Unlock()
	return bannerDone
}

func (a *Assembler) recordFirstLine(h *hostState, now time.Time, first *store.LogLine, reason string, target int64) int64 {
	ev := event.Event{Time: now, Host: h.name, Kind: event.KernelLine, Stage: event.StageKernelUp,
		Message: first.Text, Attrs: map[string]string{"reason": reason}}
	if a.tracker != nil {
		e, err := a.tracker.Record(context.Background(), ev)
		if err == nil && e.BootID != 0 {
			return e.BootID
		}
		if err != nil && a.log != nil {
			a.log.Warn("netconsole: recording first kernel line failed", zap.String("host", h.name), zap.Error(err))
		}
		if target != 0 {
			return target
		}
	}
	boot := h.boot + 1
	if a.last != nil && h.boot == 0 {
		boot = max(boot, a.last(h.name)+1)
	}
	ev.BootID = boot
	a.events.Emit(ev)
	return boot
}

// flushHost emits whatever the host still holds (fragments, a pending
// plain piece), for shutdown.
func (a *Assembler) flushHost(h *hostState, now time.Time, out *lineBuf) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, f := range h.frags {
		a.flushFragment(h, f, now, out, "shutdown")
	}
	h.frags = nil
	if h.pending != nil {
		a.plainRecord(h, h.pending, now, out, store.LogFlagReassembled|store.LogFlagTruncated)
		h.pending = nil
	}
	a.releaseHeld(h, out, len(h.held))
}

// sweepHost expires stale fragments of a host that went quiet.
func (a *Assembler) sweepHost(h *hostState, now time.Time, out *lineBuf) {
	h.mu.Lock()
	defer h.mu.Unlock()
	a.expireFrags(h, now, out)
}
