package store

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestLogChunkRoundTrip(t *testing.T) {
	base := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	in := []LogLine{
		{Time: base, Seq: -1, KTime: -1, Level: -1, Text: "Linux version 6.1"},
		{Time: base.Add(time.Millisecond), Seq: 392, KTime: 3428615, Level: 6, Facility: 1, Flags: LogFlagExtended, Text: "µs ✓\ttab", Dict: "SUBSYSTEM=net\nDEVICE=n2"},
		{Time: base.Add(time.Millisecond), Seq: 1 << 40, KTime: 1 << 50, Level: 0, Flags: LogFlagTruncated | LogFlagReassembled, Text: ""},
	}
	b := AppendLogChunk(nil, base, in)
	var out []LogLine
	if err := DecodeLogChunk(b, base, func(l LogLine) bool { out = append(out, l); return true }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip:\n in %+v\nout %+v", in, out)
	}
}

func TestDecodeLogChunkErrors(t *testing.T) {
	base := time.Unix(0, 0)
	good := AppendLogChunk(nil, base, []LogLine{{Time: base, Text: "hello"}})
	tests := map[string][]byte{
		"empty":       nil,
		"version":     {9},
		"truncated":   good[:len(good)-3],
		"long length": append(append([]byte{}, good[:len(good)-7]...), 0xff, 0x01),
	}
	for name, b := range tests {
		if err := DecodeLogChunk(b, base, func(LogLine) bool { return true }); !errors.Is(err, ErrBadChunk) {
			t.Errorf("%s: err = %v, want ErrBadChunk", name, err)
		}
	}
}

func FuzzDecodeLogChunk(f *testing.F) {
	base := time.Unix(1_700_000_000, 0)
	f.Add(AppendLogChunk(nil, base, []LogLine{{Time: base, Seq: 5, KTime: 7, Level: 3, Text: "x", Dict: "K=V"}}))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		var lines []LogLine
		err := DecodeLogChunk(b, base, func(l LogLine) bool { lines = append(lines, l); return true })
		if err != nil {
			return
		}
		// What decodes re-encodes to a chunk that decodes to the same lines.
		again := AppendLogChunk(nil, base, lines)
		var back []LogLine
		if err := DecodeLogChunk(again, base, func(l LogLine) bool { back = append(back, l); return true }); err != nil {
			t.Fatalf("re-encoded chunk does not decode: %v", err)
		}
		if len(back) != len(lines) {
			t.Fatalf("%d lines, re-decoded %d", len(lines), len(back))
		}
	})
}
