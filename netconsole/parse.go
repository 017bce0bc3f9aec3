// Package netconsole receives the Linux kernel's netconsole UDP stream,
// parses its plain and extended formats, attributes datagrams to hosts,
// splits them into boots, and hands complete log lines to storage and to
// live subscribers.
//
// The pieces, in the order a datagram meets them:
//
//   - ParseDatagram (parse.go) splits one datagram into its header fields
//     without allocating: plain `[ sec.usec] text` records and extended
//     `[release,]prio,seq,usec,flags[,field...];text\n[ KEY=VALUE\n]*`
//     records, including `ncfrag=off/total` fragments.
//   - Assembler (assemble.go) keeps per-host state: fragment reassembly with
//     a timeout, plain records split into 1000-byte pieces, and boot-session
//     detection (seq reset, time going backwards, "Linux version" banner,
//     a new boot attempt opened by the tracker).
//   - Server (server.go) reads batches of datagrams from one or more
//     SO_REUSEPORT sockets, resolves the source address to a host, and feeds
//     the assembler; finished lines go to a LineSink (the store writer and
//     the live broker).
package netconsole

import (
	"bytes"
	"errors"
	"fmt"
)

// MaxDatagram is the largest netconsole payload the kernel sends
// (MAX_PRINT_CHUNK 1000; the skb pool allows 1460). Larger datagrams are
// accepted up to MaxRecord and truncated beyond it.
const MaxDatagram = 1000

// MaxRecord bounds a reassembled extended record or a joined plain record,
// like netconsd's NCRX_LINE_MAX.
const MaxRecord = 8192

// Format is the wire format of a datagram.
type Format uint8

// Formats of netconsole datagrams.
const (
	FormatPlain    Format = iota // console text, optionally "[ sec.usec] " prefixed
	FormatExtended               // /dev/kmsg style header
)

// String names the format.
func (f Format) String() string {
	if f == FormatExtended {
		return "extended"
	}
	return "plain"
}

// Datagram is one parsed netconsole datagram. Its byte slices point into
// the buffer passed to ParseDatagram and are only valid as long as it is.
type Datagram struct {
	Format  Format
	Release []byte // extended with release prefix ("6.1.0-56-amd64"), else nil
	// Facility and Level come from the extended prio field; Level is -1 for
	// plain datagrams.
	Facility int
	Level    int
	Seq      uint64 // extended only
	// TSUsec is the kernel's timestamp in microseconds since boot, or -1
	// when the datagram carries none (plain without printk.time).
	TSUsec int64
	// Cont is set for the extended flag 'c' or '+' (continuation fragment
	// of a line).
	Cont bool
	// Frag is set when the header carries ncfrag=FragOff/FragTotal; Body
	// then holds the bytes FragOff..FragOff+len(Body) of the record body.
	Frag      bool
	FragOff   int
	FragTotal int
	// Body is, for extended records, the escaped text, '\n' and the
	// continuation ("dictionary") lines; for plain datagrams the whole
	// payload.
	Body []byte
}

// Parse errors. They are wrapped with the offending detail.
var (
	ErrEmpty     = errors.New("empty datagram")
	ErrMalformed = errors.New("malformed extended header")
)

// ParseDatagram parses one netconsole payload into d. A payload that
// starts like an extended header ("[release,]digits,digits,digits,") but
// fails to parse as one is an error; anything else is plain text.
func ParseDatagram(b []byte, d *Datagram) error {
	*d = Datagram{Level: -1, TSUsec: -1}
	if len(b) == 0 {
		return ErrEmpty
	}
	semi := bytes.IndexByte(b, ';')
	if semi < 0 || !looksExtended(b[:semi]) {
		d.Format = FormatPlain
		d.Body = b
		d.TSUsec = plainTimestamp(b)
		return nil
	}
	d.Format = FormatExtended
	if err := parseExtendedHeader(b[:semi], d); err != nil {
		return err
	}
	d.Body = b[semi+1:]
	return nil
}

// looksExtended reports whether hdr (the bytes before the first ';') is
// shaped like "[release,]N,N,N,..." with only header-legal bytes.
func looksExtended(hdr []byte) bool {
	if len(hdr) < 7 || bytes.IndexByte(hdr, '\n') >= 0 {
		return false
	}
	f := hdr
	if hasRelease(hdr) {
		c := bytes.IndexByte(hdr, ',')
		f = hdr[c+1:]
	}
	for i := 0; i < 3; i++ {
		c := bytes.IndexByte(f, ',')
		if c <= 0 || !allDigits(f[:c]) {
			return false
		}
		f = f[c+1:]
	}
	return len(f) > 0
}

// hasRelease applies ncrx's rule: a '.' before the first ',' means the
// record starts with the kernel release.
func hasRelease(hdr []byte) bool {
	c := bytes.IndexByte(hdr, ',')
	d := bytes.IndexByte(hdr, '.')
	return c > 0 && d >= 0 && d < c
}

func allDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func parseExtendedHeader(hdr []byte, d *Datagram) error {
	if hasRelease(hdr) {
		c := bytes.IndexByte(hdr, ',')
		d.Release = hdr[:c]
		hdr = hdr[c+1:]
	}
	field := 0
	for len(hdr) > 0 {
		var f []byte
		if c := bytes.IndexByte(hdr, ','); c >= 0 {
			f, hdr = hdr[:c], hdr[c+1:]
		} else {
			f, hdr = hdr, nil
		}
		if err := headerField(field, f, d); err != nil {
			return err
		}
		field++
	}
	if field < 4 {
		return fmt.Errorf("%w: %d fields, want at least 4", ErrMalformed, field)
	}
	return nil
}

// headerField stores the i-th comma separated header field.
func headerField(i int, f []byte, d *Datagram) error {
	switch i {
	case 0:
		prio, ok := parseUint(f)
		if !ok || prio > 1<<20 {
			return fmt.Errorf("%w: prio %q", ErrMalformed, f)
		}
		d.Facility, d.Level = int(prio>>3), int(prio&7)
	case 1:
		seq, ok := parseUint(f)
		if !ok {
			return fmt.Errorf("%w: seq %q", ErrMalformed, f)
		}
		d.Seq = seq
	case 2:
		ts, ok := parseUint(f)
		if !ok || ts > 1<<62 {
			return fmt.Errorf("%w: timestamp %q", ErrMalformed, f)
		}
		d.TSUsec = int64(ts)
	case 3:
		d.Cont = bytes.IndexByte(f, 'c') >= 0 || bytes.IndexByte(f, '+') >= 0
	default:
		return optionalField(f, d)
	}
	return nil
}

// optionalField handles "ncfrag=off/total"; caller= and unknown fields are
// ignored as Documentation/ABI/testing/dev-kmsg asks.
func optionalField(f []byte, d *Datagram) error {
	v, ok := bytes.CutPrefix(f, []byte("ncfrag="))
	if !ok {
		return nil
	}
	if d.Frag {
		return fmt.Errorf("%w: duplicate ncfrag", ErrMalformed)
	}
	offB, totB, ok := bytes.Cut(v, []byte("/"))
	off, ok1 := parseUint(offB)
	tot, ok2 := parseUint(totB)
	if !ok || !ok1 || !ok2 || tot == 0 || off >= tot || tot > 1<<20 {
		return fmt.Errorf("%w: ncfrag %q", ErrMalformed, v)
	}
	d.Frag, d.FragOff, d.FragTotal = true, int(off), int(tot)
	return nil
}

func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		nn := n*10 + uint64(c-'0')
		if nn < n {
			return 0, false
		}
		n = nn
	}
	return n, true
}

// plainTimestamp returns the microseconds of a leading "[ sec.usec]"
// printk time prefix, or -1.
func plainTimestamp(b []byte) int64 {
	ts, _, ok := splitPlainPrefix(b)
	if !ok {
		return -1
	}
	return ts
}

// splitPlainPrefix parses "[    3.428615] " (optionally followed by a
// "[    T123] " caller field) and returns the timestamp in µs and the rest.
func splitPlainPrefix(b []byte) (int64, []byte, bool) {
	if len(b) < 4 || b[0] != '[' {
		return -1, b, false
	}
	end := bytes.IndexByte(b[:min(len(b), 32)], ']')
	if end < 0 {
		return -1, b, false
	}
	num := bytes.TrimLeft(b[1:end], " ")
	secB, usecB, ok := bytes.Cut(num, []byte("."))
	sec, ok1 := parseUint(secB)
	usec, ok2 := parseUint(usecB)
	if !ok || !ok1 || !ok2 || len(usecB) > 9 || sec > 1<<40 {
		return -1, b, false
	}
	for i := len(usecB); i < 6; i++ {
		usec *= 10
	}
	for i := len(usecB); i > 6; i-- {
		usec /= 10
	}
	rest := b[end+1:]
	rest = skipCaller(rest)
	rest = bytes.TrimPrefix(rest, []byte(" "))
	return int64(sec)*1e6 + int64(usec), rest, true
}

// skipCaller drops a CONFIG_PRINTK_CALLER field "[    T123]" or "[  C4]".
func skipCaller(b []byte) []byte {
	if len(b) < 4 || b[0] != '[' {
		return b
	}
	end := bytes.IndexByte(b[:min(len(b), 16)], ']')
	if end < 0 {
		return b
	}
	id := bytes.TrimLeft(b[1:end], " ")
	if len(id) < 2 || (id[0] != 'T' && id[0] != 'C') || !allDigits(id[1:]) {
		return b
	}
	return b[end+1:]
}

// Unescape appends b to dst with the kernel's "\xNN" escapes decoded. A
// backslash not followed by x and two hex digits is kept as is.
func Unescape(dst, b []byte) []byte {
	for {
		i := bytes.IndexByte(b, '\\')
		if i < 0 {
			return append(dst, b...)
		}
		dst = append(dst, b[:i]...)
		b = b[i:]
		if len(b) >= 4 && b[1] == 'x' {
			hi, ok1 := unhex(b[2])
			lo, ok2 := unhex(b[3])
			if ok1 && ok2 {
				dst = append(dst, hi<<4|lo)
				b = b[4:]
				continue
			}
		}
		dst = append(dst, '\\')
		b = b[1:]
	}
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
