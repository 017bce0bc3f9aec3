package netconsole

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"netboot/internal/event"
	"netboot/internal/store"
)

var t0 = time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)

// fakeTracker numbers boots globally like internal/boot: a banner opens a
// new attempt once the current one passed kernel-up; a first kernel line
// opens one when there is none, or (the reason attribute, as proposed to
// the tracker) when the stream itself shows a new boot. Tests open attempts
// as DHCP would with open.
type fakeTracker struct {
	mu       sync.Mutex
	next     int64
	cur      map[string]int64
	kernelUp map[string]bool
	events   []event.Event
}

func newFakeTracker() *fakeTracker {
	return &fakeTracker{next: 100, cur: map[string]int64{}, kernelUp: map[string]bool{}}
}

func (f *fakeTracker) open(host string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.openLocked(host)
}

func (f *fakeTracker) openLocked(host string) int64 {
	f.next++
	f.cur[host] = f.next
	f.kernelUp[host] = false
	return f.next
}

func (f *fakeTracker) Current(host string) (int64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.cur[host]
	return id, ok
}

func (f *fakeTracker) Record(_ context.Context, e event.Event) (event.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.cur[e.Host]
	restart := e.Kind == event.KernelBanner || e.Attr("reason") == "seq-reset" || e.Attr("reason") == "time-backwards"
	if !ok || (restart && f.kernelUp[e.Host]) {
		id = f.openLocked(e.Host)
	}
	f.kernelUp[e.Host] = true
	e.BootID = id
	f.events = append(f.events, e)
	return e, nil
}

func (f *fakeTracker) Emit(e event.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, e)
}

func (f *fakeTracker) kinds() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, e := range f.events {
		out = append(out, fmt.Sprintf("%s/%d", e.Kind, e.BootID))
	}
	return out
}

// feed runs payloads through one host, one millisecond apart.
func feed(a *Assembler, h *hostState, now *time.Time, out *lineBuf, payloads ...string) []Result {
	var rs []Result
	for _, p := range payloads {
		*now = now.Add(time.Millisecond)
		rs = append(rs, a.Process(h, []byte(p), *now, out))
	}
	return rs
}

func texts(lines []store.LogLine) []string {
	var out []string
	for _, l := range lines {
		out = append(out, fmt.Sprintf("%d:%s", l.BootID, l.Text))
	}
	return out
}

func TestFragments(t *testing.T) {
	const (
		f0 = "6,10,100,-,ncfrag=0/12;hello "
		f1 = "6,10,100,-,ncfrag=6/12;world\n"
		f2 = "6,10,100,-,ncfrag=11/12;!" // overlaps nothing: completes 0..11
	)
	tests := []struct {
		name     string
		in       []string
		advance  time.Duration
		want     []string
		wantLost float64
		results  []Result
	}{
		{"in order", []string{"6,10,100,-,ncfrag=0/12;hello ", "6,10,100,-,ncfrag=6/6;x"}, 0, nil, 0,
			[]Result{ResultReassembled, ResultMalformed}},
		{"whole", []string{"6,10,100,-,ncfrag=0/11;hello ", "6,10,100,-,ncfrag=6/11;world"}, 0,
			[]string{"1:hello world"}, 0, []Result{ResultReassembled, ResultReassembled}},
		{"out of order", []string{"6,10,100,-,ncfrag=6/11;world", "6,10,100,-,ncfrag=0/11;hello "}, 0,
			[]string{"1:hello world"}, 0, []Result{ResultReassembled, ResultReassembled}},
		{"duplicate piece", []string{"6,10,100,-,ncfrag=0/11;hello ", "6,10,100,-,ncfrag=0/11;hello ", "6,10,100,-,ncfrag=6/11;world", "6,10,100,-,ncfrag=6/11;world"}, 0,
			[]string{"1:hello world"}, 0, []Result{ResultReassembled, ResultDropped, ResultReassembled, ResultDropped}},
		{"missing piece flushed after timeout", []string{"6,10,100,-,ncfrag=0/11;hello "}, 3 * time.Second,
			[]string{"1:hello "}, 5, []Result{ResultReassembled}},
		{"conflicting total", []string{"6,10,100,-,ncfrag=0/11;hello ", "6,10,100,-,ncfrag=6/12;world!"}, 3 * time.Second,
			[]string{"1:hello "}, 5, []Result{ResultReassembled, ResultDropped}},
		{"interleaved records", []string{"6,10,100,-,ncfrag=0/4;ab", "6,11,101,-,ncfrag=0/4;cd", "6,11,101,-,ncfrag=2/4;ef", "6,10,100,-,ncfrag=2/4;gh"}, 0,
			[]string{"1:cdef", "1:abgh"}, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m, err := NewMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			a := NewAssembler(AssemblerConfig{}, nil, nil, nil, m, nil)
			h := newHostState("h", false)
			now := t0
			var out lineBuf
			rs := feed(a, h, &now, &out, tt.in...)
			if tt.advance > 0 {
				now = now.Add(tt.advance)
				a.sweepHost(h, now, &out)
			}
			if tt.results != nil && fmt.Sprint(rs) != fmt.Sprint(tt.results) {
				t.Errorf("results = %v, want %v", rs, tt.results)
			}
			if tt.want != nil && fmt.Sprint(texts(out.lines)) != fmt.Sprint(tt.want) {
				t.Errorf("lines = %q, want %q", texts(out.lines), tt.want)
			}
			lost := testutil.ToFloat64(m.fragLostB.WithLabelValues("timeout"))
			if lost != tt.wantLost {
				t.Errorf("bytes lost = %v, want %v", lost, tt.wantLost)
			}
			_ = f0 + f1 + f2
		})
	}
}

func TestFragmentMemoryBound(t *testing.T) {
	a := NewAssembler(AssemblerConfig{MaxReassemblyBytes: 3000, MaxFragsPerHost: 100}, nil, nil, nil, nil, nil)
	h := newHostState("h", false)
	now := t0
	var out lineBuf
	var rs []Result
	for i := 0; i < 5; i++ {
		rs = append(rs, feed(a, h, &now, &out, fmt.Sprintf("6,%d,1,-,ncfrag=0/1000;x", i))...)
	}
	want := []Result{ResultReassembled, ResultReassembled, ResultDropped, ResultDropped, ResultDropped}
	if fmt.Sprint(rs) != fmt.Sprint(want) {
		t.Fatalf("results = %v, want %v", rs, want)
	}
	a.flushHost(h, now, &out)
	if got := a.fragMem.Load(); got != 0 {
		t.Errorf("reassembly memory after flush = %d, want 0", got)
	}
}

func TestPlainSplitRecord(t *testing.T) {
	long := "[    3.468690] NBTEST: long968: " + strings.Repeat("x", 1000-32)
	tests := []struct {
		name    string
		in      []string
		advance time.Duration
		want    []string
	}{
		{"joined", []string{long, "END\n"}, 0, []string{"1:NBTEST: long968: " + strings.Repeat("x", 968) + "END"}},
		{"next record arrives instead", []string{long, "[    3.5] next\n"}, 0,
			[]string{"1:NBTEST: long968: " + strings.Repeat("x", 968), "1:next"}},
		{"timeout", []string{long}, 3 * time.Second, []string{"1:NBTEST: long968: " + strings.Repeat("x", 968)}},
		{"multi-line record", []string{"[    1.0] a\n[    1.0] b\n"}, 0, []string{"1:a", "1:b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAssembler(AssemblerConfig{}, nil, nil, nil, nil, nil)
			h := newHostState("h", false)
			now := t0
			var out lineBuf
			feed(a, h, &now, &out, tt.in...)
			if tt.advance > 0 {
				now = now.Add(tt.advance)
				a.sweepHost(h, now, &out)
			}
			a.flushHost(h, now, &out) // plain lines held for the merge window
			if fmt.Sprint(texts(out.lines)) != fmt.Sprint(tt.want) {
				t.Errorf("lines = %q\nwant %q", texts(out.lines), tt.want)
			}
		})
	}
}

func TestBootSessions(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		dhcp int // open a tracker attempt before input index dhcp (0: never)
		want []string
	}{
		{"seq reset far", []string{"6,5000,100000000,-;a\n", "6,3,500000,-;b\n"}, 0, []string{"101:a", "102:b"}},
		{"reordered is not a reset", []string{"6,7,300,-;a\n", "6,6,200,-;b\n"}, 0, []string{"101:a", "101:b"}},
		{"seq reset", []string{"6,5,100,-;a\n", "6,6,200,-;b\n", "6,0,0,-;c\n"}, 0, []string{"101:a", "101:b", "102:c"}},
		{"time backwards", []string{"[    5.0] a\n", "[    0.5] b\n"}, 0, []string{"101:a", "102:b"}},
		{"clocksource step back is not a reboot", []string{"[    0.040000] a\n", "[    0.004702] b\n"}, 0, []string{"101:a", "101:b"}},
		{"banner", []string{"[    5.0] a\n", "[    6.0] Linux version 6.1\n"}, 0, []string{"101:a", "102:Linux version 6.1"}},
		{"duplicate", []string{"6,5,100,-;a\n", "6,5,100,-;a\n"}, 0, []string{"101:a"}},
		{"plain replay then extended stream: one boot",
			[]string{"[    0.000000] Linux version 6.1\n", "[    3.0] x\n", "14,391,3425807,-;y\n", "[    3.5] y dup\n", "14,392,3500000,-;z\n"}, 0,
			[]string{"101:Linux version 6.1", "101:x", "101:y", "101:z"}},
		{"tracker opened a new attempt", []string{"6,5,100,-;a\n", "6,6,200,-;b\n", "6,7,300,-;c\n"}, 2, []string{"101:a", "101:b", "102:c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newFakeTracker()
			a := NewAssembler(AssemblerConfig{TrackerPoll: time.Nanosecond}, nil, tr, tr, nil, nil)
			h := newHostState("h", false)
			now := t0
			var out lineBuf
			for i, p := range tt.in {
				if tt.dhcp > 0 && i == tt.dhcp {
					tr.open("h")
				}
				feed(a, h, &now, &out, p)
			}
			a.flushHost(h, now, &out) // plain lines held for the merge window
			if fmt.Sprint(texts(out.lines)) != fmt.Sprint(tt.want) {
				t.Errorf("lines = %q\nwant %q\nevents %v", texts(out.lines), tt.want, tr.kinds())
			}
		})
	}
}

func TestBootEventsOncePerBoot(t *testing.T) {
	tr := newFakeTracker()
	a := NewAssembler(AssemblerConfig{}, nil, tr, tr, nil, nil)
	h := newHostState("h", false)
	now := t0
	var out lineBuf
	feed(a, h, &now, &out, "[    0.000000] Linux version 6.1\n", "[    1.0] a\n", "[    0.000000] Linux version 6.1\n", "[    1.0] b\n")
	want := "[netconsole.banner/101 netconsole.first/101 netconsole.banner/102 netconsole.first/102]"
	if got := fmt.Sprint(tr.kinds()); got != want {
		t.Errorf("events = %s, want %s", got, want)
	}
}

func TestLocalBootNumbering(t *testing.T) {
	a := NewAssembler(AssemblerConfig{}, nil, nil, nil, nil, func(string) int64 { return 41 })
	h := newHostState("h", false)
	now := t0
	var out lineBuf
	feed(a, h, &now, &out, "6,5,100,-;a\n", "6,0,0,-;b\n")
	if got, want := fmt.Sprint(texts(out.lines)), "[42:a 43:b]"; got != want {
		t.Errorf("lines = %s, want %s", got, want)
	}
}

func TestDictAndEscapes(t *testing.T) {
	a := NewAssembler(AssemblerConfig{}, nil, nil, nil, nil, nil)
	h := newHostState("h", false)
	now := t0
	var out lineBuf
	feed(a, h, &now, &out, "6.4.0,6,444,501151268,-,caller=T1;tab\\x09here\n SUBSYSTEM=acpi\n DEVICE=+acpi:PNP0A03:00\n", "garbage;1,2,3\n", "6,1,2,-,ncfrag=5/2;bad\n")
	want := []store.LogLine{
		{Seq: 444, KTime: 501151268, Level: 6, Flags: store.LogFlagExtended, Text: "tab\there", Dict: "SUBSYSTEM=acpi\nDEVICE=+acpi:PNP0A03:00"},
		{Seq: -1, KTime: -1, Level: -1, Text: "garbage;1,2,3"},
		{Seq: -1, KTime: -1, Level: -1, Flags: store.LogFlagTruncated, Text: `"6,1,2,-,ncfrag=5/2;bad\n"`},
	}
	if len(out.lines) != len(want) {
		t.Fatalf("got %d lines: %+v", len(out.lines), out.lines)
	}
	for i, w := range want {
		g := out.lines[i]
		if g.Seq != w.Seq || g.KTime != w.KTime || g.Level != w.Level || g.Flags != w.Flags || g.Text != w.Text || g.Dict != w.Dict {
			t.Errorf("line %d = %+v\nwant %+v", i, g, w)
		}
	}
}
