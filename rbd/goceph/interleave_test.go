package goceph

import (
	"fmt"
	"sort"
	"testing"
	"time"
)

// clientWrite is one successful write of one client to an image.
type clientWrite struct {
	end  time.Time
	addr string
}

// interleavings returns a message for every write, in completion order,
// by a client that had already been followed by another writer: the sign
// of two clients writing under one exclusive lock.
func interleavings(ws []clientWrite) []string {
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].end.Before(ws[j].end) })
	var out []string
	done := map[string]bool{}
	for i := 1; i < len(ws); i++ {
		if ws[i].addr == ws[i-1].addr {
			continue
		}
		done[ws[i-1].addr] = true
		if done[ws[i].addr] {
			out = append(out, fmt.Sprintf("%s wrote again at %s after %s had written: two writers",
				ws[i].addr, ws[i].end.Format("15:04:05.000"), ws[i-1].addr))
		}
	}
	return out
}

// TestInterleavings proves the safety test's checker can fail.
func TestInterleavings(t *testing.T) {
	at := func(ms int, a string) clientWrite { return clientWrite{end: time.UnixMilli(int64(ms)), addr: a} }
	tests := []struct {
		name string
		ws   []clientWrite
		want int
	}{
		{"one writer", []clientWrite{at(1, "A"), at(2, "A")}, 0},
		{"hand-over", []clientWrite{at(1, "A"), at(2, "A"), at(3, "B"), at(4, "B"), at(5, "C")}, 0},
		{"unsorted hand-over", []clientWrite{at(3, "B"), at(1, "A"), at(4, "B")}, 0},
		{"old writer resumes", []clientWrite{at(1, "A"), at(2, "B"), at(3, "A")}, 1},
		{"ping-pong", []clientWrite{at(1, "A"), at(2, "B"), at(3, "A"), at(4, "B")}, 2},
	}
	for _, tt := range tests {
		if got := interleavings(tt.ws); len(got) != tt.want {
			t.Errorf("%s: %d violations %q, want %d", tt.name, len(got), got, tt.want)
		}
	}
}
