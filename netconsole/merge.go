package netconsole

import (
	"hash/maphash"
	"time"

	"go.uber.org/zap"

	"netboot/internal/store"
)

// Merging the plain and extended copies of a line.
//
// A kernel with both a plain and an extended target sends every record
// twice, from two source ports: the two copies may land on different
// SO_REUSEPORT sockets and be processed by different readers, in either
// order and some time apart. The extended copy wins (level, sequence
// number, dictionary):
//
//   - while the boot has no extended stream, timestamped plain lines are
//     held back for MergeWindow; the first extended record drops the held
//     lines it supersedes (kernel time at or after it) and emits the older
//     ones before itself, in order;
//   - once the extended stream is active, plain lines at or after its first
//     record are dropped on arrival;
//   - an extended record whose plain copy was emitted anyway (it came later
//     than the window) is dropped if the copy is among the host's recent
//     plain lines, so the line is still stored once.

// emitPlain holds a plain line back while an extended copy may still come,
// or appends it to out.
func (a *Assembler) emitPlain(h *hostState, out *lineBuf, l store.LogLine) {
	if a.cfg.MergeWindow > 0 && l.KTime >= 0 && h.extFirstTS < 0 {
		if a.heldMem.Add(int64(len(l.Text))) <= a.cfg.MaxReassemblyBytes {
			h.held = append(h.held, l)
			if over := len(h.held) - a.cfg.MaxHeldLines; over > 0 {
				a.releaseHeld(h, out, over)
			}
			return
		}
		a.heldMem.Add(-int64(len(l.Text)))
	}
	a.releaseHeld(h, out, len(h.held))
	a.appendPlain(h, out, l)
}

func (a *Assembler) appendPlain(h *hostState, out *lineBuf, l store.LogLine) {
	if l.KTime >= 0 {
		h.recent.add(l.KTime, l.Text)
	}
	out.lines = append(out.lines, l)
}

// releaseHeld emits the n oldest held lines.
func (a *Assembler) releaseHeld(h *hostState, out *lineBuf, n int) {
	if n <= 0 {
		return
	}
	for _, l := range h.held[:n] {
		a.heldMem.Add(-int64(len(l.Text)))
		a.appendPlain(h, out, l)
	}
	a.shiftHeld(h, n)
}

func (a *Assembler) shiftHeld(h *hostState, n int) {
	rest := copy(h.held, h.held[n:])
	clear(h.held[rest:])
	h.held = h.held[:rest]
	if rest == 0 && cap(h.held) > 64 {
		h.held = nil // a replay burst is over: release its backing array
	}
}

// expireHeld emits the held lines whose window passed.
func (a *Assembler) expireHeld(h *hostState, now time.Time, out *lineBuf) {
	n := 0
	for n < len(h.held) && now.Sub(h.held[n].Time) >= a.cfg.MergeWindow {
		n++
	}
	a.releaseHeld(h, out, n)
}

// settleHeld resolves the held lines once the extended stream is active:
// those it carries are dropped, the older ones emitted.
func (a *Assembler) settleHeld(h *hostState, out *lineBuf) {
	if len(h.held) == 0 {
		return
	}
	dropped := 0
	for _, l := range h.held {
		a.heldMem.Add(-int64(len(l.Text)))
		if l.KTime >= h.extFirstTS {
			dropped++
			continue
		}
		a.appendPlain(h, out, l)
	}
	a.shiftHeld(h, len(h.held))
	if dropped > 0 && a.log != nil {
		a.log.Debug("netconsole: plain copies superseded by the extended stream", zap.String("host", h.name), zap.Int("lines", dropped))
	}
}

// sweepEvery is how often quiet hosts are swept (fragments, held lines).
func (a *Assembler) sweepEvery() time.Duration {
	d := a.cfg.FragTimeout
	if a.cfg.MergeWindow > 0 && a.cfg.MergeWindow < d {
		d = a.cfg.MergeWindow
	}
	return d / 2
}

// recentPlainLines is how many emitted plain lines per host are remembered
// to recognise an extended copy arriving after the merge window.
const recentPlainLines = 64

var recentSeed = maphash.MakeSeed()

// recentPlain is a ring of the kernel time and text hash of a host's
// latest emitted plain lines.
type recentPlain struct {
	ts   [recentPlainLines]int64
	sum  [recentPlainLines]uint64
	used [recentPlainLines]bool
	next int
	n    int
}

func (r *recentPlain) add(ts int64, text string) {
	i := r.next
	if !r.used[i] {
		r.n++
	}
	r.ts[i], r.sum[i], r.used[i] = ts, maphash.String(recentSeed, text), true
	r.next = (i + 1) % recentPlainLines
}

// take reports whether a plain line with this kernel time and text was
// emitted lately, and forgets it (one extended copy per plain copy).
func (r *recentPlain) take(ts int64, text string) bool {
	if r.n == 0 || ts < 0 {
		return false
	}
	var sum uint64
	hashed := false
	for i := range r.ts {
		if !r.used[i] || r.ts[i] != ts {
			continue
		}
		if !hashed {
			sum, hashed = maphash.String(recentSeed, text), true
		}
		if r.sum[i] == sum {
			r.used[i] = false
			r.n--
			return true
		}
	}
	return false
}
