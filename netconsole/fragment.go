package netconsole

import (
	"math/bits"
	"time"
)

// fragment collects the ncfrag pieces of one extended record.
type fragment struct {
	seq     uint64
	hdr     Datagram // header fields of the first piece seen; slices cleared
	release string
	total   int // bytes kept (FragTotal capped at MaxRecord)
	claimed int // FragTotal as announced
	got     int // distinct bytes filled
	buf     []byte
	have    []uint64 // bitmap of filled bytes
	started time.Time
}

func newFragment(d *Datagram, now time.Time) *fragment {
	total := min(d.FragTotal, MaxRecord)
	f := &fragment{
		seq: d.Seq, hdr: *d, total: total, claimed: d.FragTotal,
		buf: make([]byte, total), have: make([]uint64, (total+63)/64), started: now,
	}
	f.release = string(d.Release)
	f.hdr.Release, f.hdr.Body = nil, nil
	return f
}

// size is the memory the fragment holds, for the global budget.
func (f *fragment) size() int { return len(f.buf) + 8*len(f.have) }

// add copies a piece into place; it returns how many new bytes it filled
// (0 for a pure duplicate) and whether the piece disagrees with the first
// (different total).
func (f *fragment) add(d *Datagram) (filled int, conflict bool) {
	if d.FragTotal != f.claimed {
		return 0, true
	}
	end := min(d.FragOff+len(d.Body), f.total)
	for i := d.FragOff; i < end; i++ {
		w, b := i/64, uint64(1)<<(i%64)
		if f.have[w]&b == 0 {
			f.have[w] |= b
			f.buf[i] = d.Body[i-d.FragOff]
			filled++
		}
	}
	f.got += filled
	return filled, false
}

func (f *fragment) complete() bool { return f.got >= f.total }

// assembled returns the record body; for an incomplete record the missing
// bytes are left out (contiguous present runs are joined).
func (f *fragment) assembled() []byte {
	if f.complete() {
		return f.buf
	}
	out := make([]byte, 0, f.got)
	for i := 0; i < f.total; i++ {
		if f.have[i/64]&(1<<(i%64)) != 0 {
			out = append(out, f.buf[i])
		}
	}
	return out
}

// missing counts the bytes never received.
func (f *fragment) missing() int {
	n := 0
	for _, w := range f.have {
		n += 64 - bits.OnesCount64(w)
	}
	return n - (64*len(f.have) - f.total)
}
