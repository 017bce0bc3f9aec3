package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// LogLine is one kernel log line received over netconsole.
type LogLine struct {
	Time   time.Time `json:"time"`              // when netbootd received it
	Host   string    `json:"host"`              // inventory name or "unknown:<ip>"
	BootID int64     `json:"boot_id,omitempty"` // boot attempt (tracker's id)
	// Seq is the kernel's printk sequence number (extended format), or -1.
	Seq int64 `json:"seq"`
	// KTime is the kernel timestamp in µs since boot, or -1 when unknown.
	KTime int64 `json:"ktime_us"`
	// Level is the syslog level 0 (emerg) … 7 (debug), or -1 when unknown
	// (plain format).
	Level    int8 `json:"level"`
	Facility int8 `json:"facility,omitempty"`
	// Flags describe how the line was received (LogFlag*).
	Flags uint8  `json:"flags,omitempty"`
	Text  string `json:"text"`
	// Dict holds the extended record's continuation lines (KEY=VALUE,
	// userdata, sysdata), '\n'-separated, without the leading spaces.
	Dict string `json:"dict,omitempty"`
}

// Log line flags.
const (
	LogFlagExtended    uint8 = 1 << iota // received in the extended format
	LogFlagReassembled                   // joined from several datagrams
	LogFlagTruncated                     // pieces were missing or the record exceeded the size limit
	LogFlagCont                          // extended 'c' flag: part of a longer line
	LogFlagBanner                        // the "Linux version" banner
)

// LogQuery selects log lines. Zero fields do not filter.
type LogQuery struct {
	Host   string
	BootID int64     // 0: every boot
	Since  time.Time // lines received at or after Since
	// MaxLevel keeps lines with Level <= MaxLevel (more severe); lines of
	// unknown level are kept unless MaxLevel is set. -1 or 0 with
	// HasMaxLevel false: no filter.
	MaxLevel    int8
	HasMaxLevel bool
	// Match keeps lines for which it returns true (grep); nil keeps all.
	Match func(text string) bool
	// Limit keeps the last Limit lines (0: all).
	Limit int
}

// LogBoot summarizes the stored lines of one boot.
type LogBoot struct {
	BootID int64     `json:"boot_id"`
	First  time.Time `json:"first"`
	Last   time.Time `json:"last"`
	Lines  int64     `json:"lines"`
}

// LogStats describes what the log store holds.
type LogStats struct {
	Chunks int64
	Lines  int64
	Bytes  int64
}

// LogStore persists netconsole lines. Writers hand over batches; an
// implementation must store each batch atomically (one transaction).
type LogStore interface {
	// AppendLogs stores lines (any mix of hosts and boots) in one transaction.
	AppendLogs(ctx context.Context, lines []LogLine) error
	// QueryLogs returns matching lines in receive order (oldest first).
	QueryLogs(ctx context.Context, q LogQuery) ([]LogLine, error)
	// LogBoots lists the boots that have lines for host, oldest first.
	LogBoots(ctx context.Context, host string) ([]LogBoot, error)
	// LastLogBoot returns the highest boot id with lines for host (0: none).
	LastLogBoot(ctx context.Context, host string) (int64, error)
	// PruneLogs deletes lines received before olderThan, then the oldest
	// lines until at most maxBytes of text remain (maxBytes <= 0: no size
	// bound). It returns the number of lines deleted.
	PruneLogs(ctx context.Context, olderThan time.Time, maxBytes int64) (int64, error)
	LogStats(ctx context.Context) (LogStats, error)
}

// Chunk encoding: lines of one host and boot are stored together as one
// blob. Layout: version byte, then per line: uvarint time delta (ns from
// the previous line, first from the chunk base), varint seq, varint ktime,
// level, facility, flags bytes, uvarint len + text, uvarint len + dict.

const logChunkVersion = 1

// ErrBadChunk reports a chunk that does not decode.
var ErrBadChunk = errors.New("bad log chunk")

// AppendLogChunk encodes lines (all of one host and boot, in order) onto
// dst, with times relative to base.
func AppendLogChunk(dst []byte, base time.Time, lines []LogLine) []byte {
	dst = append(dst, logChunkVersion)
	prev := base.UnixNano()
	for i := range lines {
		l := &lines[i]
		t := l.Time.UnixNano()
		d := t - prev
		if d < 0 {
			d = 0
			t = prev
		}
		prev = t
		dst = binary.AppendUvarint(dst, uint64(d))
		dst = binary.AppendVarint(dst, l.Seq)
		dst = binary.AppendVarint(dst, l.KTime)
		dst = append(dst, byte(l.Level), byte(l.Facility), l.Flags)
		dst = binary.AppendUvarint(dst, uint64(len(l.Text)))
		dst = append(dst, l.Text...)
		dst = binary.AppendUvarint(dst, uint64(len(l.Dict)))
		dst = append(dst, l.Dict...)
	}
	return dst
}

// DecodeLogChunk decodes a chunk written by AppendLogChunk, calling fn for
// every line (Host and BootID are left for the caller to set). fn returning
// false stops the decoding early.
func DecodeLogChunk(b []byte, base time.Time, fn func(LogLine) bool) error {
	if len(b) == 0 || b[0] != logChunkVersion {
		return fmt.Errorf("decode log chunk: %w: version", ErrBadChunk)
	}
	b = b[1:]
	t := base.UnixNano()
	for len(b) > 0 {
		var l LogLine
		var d uint64
		var err error
		if d, b, err = uvarint(b); err != nil {
			return err
		}
		t += int64(d)
		l.Time = time.Unix(0, t).UTC()
		if l.Seq, b, err = varint(b); err != nil {
			return err
		}
		if l.KTime, b, err = varint(b); err != nil {
			return err
		}
		if len(b) < 3 {
			return fmt.Errorf("decode log chunk: %w: short line header", ErrBadChunk)
		}
		l.Level, l.Facility, l.Flags = int8(b[0]), int8(b[1]), b[2]
		b = b[3:]
		if l.Text, b, err = lenString(b); err != nil {
			return err
		}
		if l.Dict, b, err = lenString(b); err != nil {
			return err
		}
		if !fn(l) {
			return nil
		}
	}
	return nil
}

func uvarint(b []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, fmt.Errorf("decode log chunk: %w: varint", ErrBadChunk)
	}
	return v, b[n:], nil
}

func varint(b []byte) (int64, []byte, error) {
	v, n := binary.Varint(b)
	if n <= 0 {
		return 0, nil, fmt.Errorf("decode log chunk: %w: varint", ErrBadChunk)
	}
	return v, b[n:], nil
}

func lenString(b []byte) (string, []byte, error) {
	n, b, err := uvarint(b)
	if err != nil {
		return "", nil, err
	}
	if n > uint64(len(b)) {
		return "", nil, fmt.Errorf("decode log chunk: %w: length %d beyond end", ErrBadChunk, n)
	}
	return string(b[:n]), b[n:], nil
}
