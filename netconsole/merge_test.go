package netconsole

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"netboot/internal/store"
)

// copyOf names a stored line and the copy it came from.
func copyOf(lines []store.LogLine) []string {
	var out []string
	for _, l := range lines {
		from := "plain"
		if l.Flags&store.LogFlagExtended != 0 {
			from = "ext"
		}
		out = append(out, fmt.Sprintf("%.20s/%s", l.Text, from))
	}
	return out
}

// A guest with a plain and an extended target sends each record twice,
// from two ports; the receiver's readers may process the copies in either
// order and some time apart. Every line must be stored once, from the
// extended copy when it comes within the merge window.
func TestPlainAndExtendedCopiesMerged(t *testing.T) {
	const (
		plainX     = "[    3.000000] replayed before the extended target\n"
		plainHello = "[    3.428615] NCTEST: hello boot_id=c88f6cdc\n"
		extHello   = "6,392,3428615,-;NCTEST: hello boot_id=c88f6cdc\n"
		plainErr   = "[    3.429893] NCTEST: error line\n"
		extErr     = "3,393,3429893,-;NCTEST: error line\n"
	)
	long := "NCTEST: long " + strings.Repeat("y", 970)
	plainLong := "[    3.430602] " + long + "\n"
	extLong0 := "4,394,3430602,-,ncfrag=0/983;" + long[:600]
	extLong1 := "4,394,3430602,-,ncfrag=600/983;" + long[600:]
	type step struct {
		after   time.Duration // since the previous datagram (the sweeper runs meanwhile)
		payload string
	}
	tests := []struct {
		name  string
		steps []step
		want  []string
	}{
		{"extended copy first", []step{{1, extHello}, {1, plainHello}},
			[]string{"NCTEST: hello boot_i/ext"}},
		{"plain copy first (first extended record)", []step{{1, plainX}, {1, plainHello}, {1, extHello}, {1, plainErr}, {1, extErr}},
			[]string{"replayed before the /plain", "NCTEST: hello boot_i/ext", "NCTEST: error line/ext"}},
		{"plain copies of later lines before the first extended record",
			[]step{{1, plainHello}, {1, plainLong}, {1, plainErr}, {1, extHello}, {1, extLong0}, {1, extLong1}, {1, extErr}},
			[]string{"NCTEST: hello boot_i/ext", "NCTEST: long yyyyyyy/ext", "NCTEST: error line/ext"}},
		{"extended copy 900ms later", []step{{1, plainHello}, {900 * time.Millisecond, extHello}},
			[]string{"NCTEST: hello boot_i/ext"}},
		{"extended copy after the window: the plain copy stays", []step{{1, plainHello}, {3 * time.Second, extHello}, {1, extErr}, {1, plainErr}},
			[]string{"NCTEST: hello boot_i/plain", "NCTEST: error line/ext"}},
		{"reordered extended records", []step{{1, extErr}, {1, extHello}, {1, plainHello}, {1, plainErr}},
			[]string{"NCTEST: error line/ext", "NCTEST: hello boot_i/ext"}},
		{"plain copy between reordered extended records", []step{{1, extErr}, {1, plainHello}, {1, extHello}},
			[]string{"NCTEST: error line/ext", "NCTEST: hello boot_i/plain"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAssembler(AssemblerConfig{}, nil, nil, nil, nil, nil)
			h := newHostState("guest", false)
			now := t0
			var out lineBuf
			for _, s := range tt.steps {
				now = now.Add(s.after)
				a.sweepHost(h, now, &out)
				a.Process(h, []byte(s.payload), now, &out)
			}
			a.flushHost(h, now, &out)
			if got := copyOf(out.lines); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("lines = %q\nwant %q", got, tt.want)
			}
		})
	}
}

// A host with only a plain target gets its lines once the merge window
// passed (the sweeper), not only at shutdown.
func TestPlainLinesReleasedAfterMergeWindow(t *testing.T) {
	a := NewAssembler(AssemblerConfig{MergeWindow: time.Second}, nil, nil, nil, nil, nil)
	h := newHostState("guest", false)
	now := t0
	var out lineBuf
	feed(a, h, &now, &out, "[    1.0] a\n", "[    1.1] b\n", "no timestamp\n")
	if got := copyOf(out.lines); len(got) != 3 {
		t.Fatalf("a line without kernel time flushes the held ones: %q", got)
	}
	feed(a, h, &now, &out, "[    1.2] c\n")
	a.sweepHost(h, now.Add(500*time.Millisecond), &out)
	if len(out.lines) != 3 {
		t.Fatalf("line released before the window: %q", copyOf(out.lines))
	}
	a.sweepHost(h, now.Add(time.Second), &out)
	if got, want := fmt.Sprint(copyOf(out.lines)), "[a/plain b/plain no timestamp/plain c/plain]"; got != want {
		t.Errorf("lines = %s, want %s", got, want)
	}
	if n := a.heldMem.Load(); n != 0 {
		t.Errorf("held bytes = %d, want 0", n)
	}
}

func TestHeldLinesBounded(t *testing.T) {
	a := NewAssembler(AssemblerConfig{MaxHeldLines: 2, MaxReassemblyBytes: 5}, nil, nil, nil, nil, nil)
	h := newHostState("guest", false)
	now := t0
	var out lineBuf
	feed(a, h, &now, &out, "[    1.0] a\n", "[    1.1] b\n", "[    1.2] c\n")
	if got := fmt.Sprint(copyOf(out.lines)); got != "[a/plain]" {
		t.Errorf("over MaxHeldLines: emitted %s, want the oldest", got)
	}
	feed(a, h, &now, &out, "[    1.3] too long for the byte bound\n")
	if len(out.lines) != 4 {
		t.Errorf("over the byte bound: emitted %q, want everything", copyOf(out.lines))
	}
	if n := a.heldMem.Load(); n != 0 {
		t.Errorf("held bytes = %d, want 0", n)
	}
}
