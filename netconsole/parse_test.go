package netconsole

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"netboot/internal/store"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestParseDatagram(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Datagram
		err  error
	}{
		{"plain", "[    3.428615] hello\n", Datagram{Format: FormatPlain, Level: -1, TSUsec: 3428615, Body: []byte("[    3.428615] hello\n")}, nil},
		{"plain no time", "hello; 1,2,3,x\n", Datagram{Format: FormatPlain, Level: -1, TSUsec: -1, Body: []byte("hello; 1,2,3,x\n")}, nil},
		{"extended", "14,392,3428615,-;NBTEST: hi\n", Datagram{Format: FormatExtended, Facility: 1, Level: 6, Seq: 392, TSUsec: 3428615, Body: []byte("NBTEST: hi\n")}, nil},
		{"extended cont", "6,5,7,c;part", Datagram{Format: FormatExtended, Level: 6, Seq: 5, TSUsec: 7, Cont: true, Body: []byte("part")}, nil},
		{"caller and unknown fields", "6,5,7,-,caller=T12,future=1;x\n", Datagram{Format: FormatExtended, Level: 6, Seq: 5, TSUsec: 7, Body: []byte("x\n")}, nil},
		{"fragment", "14,396,3468690,-,ncfrag=970/989;END\n", Datagram{Format: FormatExtended, Facility: 1, Level: 6, Seq: 396, TSUsec: 3468690, Frag: true, FragOff: 970, FragTotal: 989, Body: []byte("END\n")}, nil},
		{"release", "6.4.0,6,444,501151268,-;netconsole: network logging started\n", Datagram{Format: FormatExtended, Release: []byte("6.4.0"), Level: 6, Seq: 444, TSUsec: 501151268, Body: []byte("netconsole: network logging started\n")}, nil},
		{"empty", "", Datagram{Level: -1, TSUsec: -1}, ErrEmpty},
		{"frag beyond total", "6,1,2,-,ncfrag=10/10;x", Datagram{}, ErrMalformed},
		{"duplicate ncfrag", "6,1,2,-,ncfrag=0/10,ncfrag=0/10;x", Datagram{}, ErrMalformed},
		{"huge seq", "6,99999999999999999999999,2,-;x", Datagram{}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d Datagram
			err := ParseDatagram([]byte(tt.in), &d)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if !sameDatagram(d, tt.want) {
				t.Errorf("got %+v\nwant %+v", d, tt.want)
			}
		})
	}
}

func sameDatagram(a, b Datagram) bool {
	return a.Format == b.Format && a.Facility == b.Facility && a.Level == b.Level && a.Seq == b.Seq &&
		a.TSUsec == b.TSUsec && a.Cont == b.Cont && a.Frag == b.Frag && a.FragOff == b.FragOff &&
		a.FragTotal == b.FragTotal && bytes.Equal(a.Body, b.Body) && bytes.Equal(a.Release, b.Release)
}

func TestUnescape(t *testing.T) {
	tests := []struct{ in, want string }{
		{`warning with unicode: \xc2\xb5s \xe2\x9c\x93 and a tab\x09here`, "warning with unicode: µs ✓ and a tab\there"},
		{`back\\slash \x5c`, `back\\slash \`},
		{`bad \xZZ end\`, `bad \xZZ end\`},
		{`short \x4`, `short \x4`},
	}
	for _, tt := range tests {
		if got := string(Unescape(nil, []byte(tt.in))); got != tt.want {
			t.Errorf("Unescape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPlainPrefix(t *testing.T) {
	tests := []struct {
		in   string
		ts   int64
		rest string
	}{
		{"[    0.000000] Linux version 6.1", 0, "Linux version 6.1"},
		{"[   12.5] x", 12500000, "x"},
		{"[    1.000001][    T1] swapper", 1000001, "swapper"},
		{"[ 1.2.3] x", -1, "[ 1.2.3] x"},
		{"no prefix", -1, "no prefix"},
	}
	for _, tt := range tests {
		ts, rest, _ := splitPlainPrefix([]byte(tt.in))
		if ts != tt.ts || string(rest) != tt.rest {
			t.Errorf("splitPlainPrefix(%q) = %d, %q; want %d, %q", tt.in, ts, rest, tt.ts, tt.rest)
		}
	}
}

// capture is one datagram of a real capture (research/qemu/examples).
type capture struct {
	Port    int    `json:"port"`
	Src     string `json:"src"`
	Payload string `json:"payload"`
}

func readCapture(t testing.TB, name string) []capture {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []capture
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var c capture
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, c)
	}
	return out
}

// goldenLine is what golden files record of a line (no receive time).
type goldenLine struct {
	Host   string `json:"host"`
	BootID int64  `json:"boot"`
	Seq    int64  `json:"seq"`
	KTime  int64  `json:"ktime_us"`
	Level  int8   `json:"level"`
	Fac    int8   `json:"facility,omitempty"`
	Flags  uint8  `json:"flags,omitempty"`
	Text   string `json:"text"`
	Dict   string `json:"dict,omitempty"`
}

func toGolden(lines []store.LogLine) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, l := range lines {
		enc.Encode(goldenLine{l.Host, l.BootID, l.Seq, l.KTime, l.Level, l.Facility, l.Flags, l.Text, l.Dict})
	}
	return buf.Bytes()
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from golden file (go test -run %s -update to accept):\ngot:\n%s", path, t.Name(), got)
	}
}

func TestGoldenCaptures(t *testing.T) {
	tests := []struct {
		name  string
		files []string
	}{
		{"plain", []string{"netconsole-plain.jsonl"}},
		{"extended", []string{"netconsole-extended.jsonl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAssembler(AssemblerConfig{}, nil, nil, nil, nil, nil)
			h := newHostState("guest", false)
			now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
			var out lineBuf
			for _, f := range tt.files {
				for _, c := range readCapture(t, f) {
					now = now.Add(time.Millisecond)
					a.Process(h, []byte(c.Payload), now, &out)
				}
			}
			a.flushHost(h, now, &out)
			checkGolden(t, tt.name, toGolden(out.lines))
		})
	}
}

// TestGoldenBothTargets feeds one guest's plain and extended targets to one
// receiver, interleaved by kernel time as they arrive: the plain replay of
// early boot is kept, then the extended stream supersedes the plain copies
// (the line at the hand-over, whose plain copy arrives first, too).
func TestGoldenBothTargets(t *testing.T) {
	plain := readCapture(t, "netconsole-plain.jsonl")
	ext := readCapture(t, "netconsole-extended.jsonl")
	var merged []capture
	for len(plain) > 0 || len(ext) > 0 {
		if len(ext) == 0 || (len(plain) > 0 && payloadTS(plain[0]) <= payloadTS(ext[0])) {
			merged, plain = append(merged, plain[0]), plain[1:]
		} else {
			merged, ext = append(merged, ext[0]), ext[1:]
		}
	}
	a := NewAssembler(AssemblerConfig{}, nil, nil, nil, nil, nil)
	h := newHostState("guest", false)
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	var out lineBuf
	for _, c := range merged {
		now = now.Add(time.Millisecond)
		a.Process(h, []byte(c.Payload), now, &out)
	}
	a.flushHost(h, now, &out)
	checkGolden(t, "both", toGolden(out.lines))
}

// payloadTS is a capture's kernel time; a headerless plain piece sorts
// with the piece before it.
func payloadTS(c capture) int64 {
	var d Datagram
	if ParseDatagram([]byte(c.Payload), &d) != nil || d.TSUsec < 0 {
		return -1
	}
	return d.TSUsec
}

func FuzzParseDatagram(f *testing.F) {
	for _, name := range []string{"netconsole-plain.jsonl", "netconsole-extended.jsonl"} {
		for _, c := range readCapture(f, name) {
			f.Add([]byte(c.Payload))
		}
	}
	f.Add([]byte("6.4.0,6,444,501151268,-;netconsole: network logging started\n SUBSYSTEM=net\n"))
	f.Add([]byte("6,1,2,-,ncfrag=0/5;ab"))
	f.Add([]byte("[    1.000001][    T1] x\\x41"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Datagram
		if err := ParseDatagram(b, &d); err != nil {
			return
		}
		if d.Frag && (d.FragOff >= d.FragTotal || d.FragTotal <= 0) {
			t.Fatalf("bad fragment bounds %d/%d", d.FragOff, d.FragTotal)
		}
		Unescape(nil, d.Body)
		// The whole pipeline must not panic either, and keep its bounds.
		a := NewAssembler(AssemblerConfig{MaxReassemblyBytes: 1 << 16}, nil, nil, nil, nil, nil)
		h := newHostState("fuzz", false)
		var out lineBuf
		now := time.Unix(0, 0)
		for i := 0; i < 3; i++ {
			a.Process(h, b, now, &out)
			now = now.Add(time.Second)
		}
		a.flushHost(h, now.Add(time.Hour), &out)
		for _, l := range out.lines {
			if len(l.Text) > 4*MaxRecord+8 {
				t.Fatalf("line of %d bytes exceeds the bound", len(l.Text))
			}
		}
		if a.fragMem.Load() != 0 {
			t.Fatalf("reassembly memory %d not released", a.fragMem.Load())
		}
	})
}

// FuzzAssemble feeds a sequence of datagrams (NUL-separated) through one
// host: fragments in any order, duplicates, conflicting totals, plain
// pieces, session resets. Nothing may panic, memory must be released and
// every line must stay within the record bound.
func FuzzAssemble(f *testing.F) {
	f.Add([]byte("6,10,100,-,ncfrag=6/11;world\x006,10,100,-,ncfrag=0/11;hello \x006,10,100,-,ncfrag=0/11;hello "))
	f.Add([]byte("6,1,1,-,ncfrag=0/4;ab\x006,2,2,-,ncfrag=0/4;cd\x006,1,1,-,ncfrag=2/5;ef\x006,0,0,-;reset"))
	f.Add([]byte("[    3.468690] long\x00END\n\x00[    0.000000] Linux version 6.1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		a := NewAssembler(AssemblerConfig{MaxReassemblyBytes: 1 << 15, MaxFragsPerHost: 4}, nil, nil, nil, nil, nil)
		h := newHostState("fuzz", false)
		var out lineBuf
		now := time.Unix(0, 0)
		for _, d := range bytes.Split(data, []byte{0}) {
			now = now.Add(100 * time.Millisecond)
			a.Process(h, d, now, &out)
			if a.fragMem.Load() > 1<<15 {
				t.Fatalf("reassembly memory %d over its bound", a.fragMem.Load())
			}
		}
		a.flushHost(h, now, &out)
		if a.fragMem.Load() != 0 {
			t.Fatalf("reassembly memory %d not released", a.fragMem.Load())
		}
		if a.heldMem.Load() != 0 || len(h.held) != 0 {
			t.Fatalf("held plain lines not released: %d bytes", a.heldMem.Load())
		}
		for _, l := range out.lines {
			if len(l.Text)+len(l.Dict) > 4*MaxRecord+8 {
				t.Fatalf("line of %d bytes", len(l.Text))
			}
		}
	})
}
