package harness

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Line is one line of a VM's serial console with the host time it arrived.
type Line struct {
	N    int // 0-based index in the stream
	Time time.Time
	Text string
}

// Serial is a line stream read from a console: every line is appended to a
// timestamped log file and kept in memory for Expect.
type Serial struct {
	start time.Time
	log   io.Writer

	mu      sync.Mutex
	lines   []Line
	changed chan struct{} // closed and replaced when a line arrives or the stream ends
	ended   bool
	cursor  int
}

// NewSerial returns a stream whose log lines are "<host RFC3339 time> +<secs since start> <text>".
func NewSerial(start time.Time, log io.Writer) *Serial {
	return &Serial{start: start, log: log, changed: make(chan struct{})}
}

// ReadFrom consumes r until EOF, splitting it into lines (CR removed, NULs
// dropped). It marks the stream ended at EOF.
func (s *Serial) ReadFrom(r io.Reader) (int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var n int64
	for {
		text, err := br.ReadString('\n')
		n += int64(len(text))
		if text != "" {
			s.add(cleanLine(text))
		}
		if err != nil {
			s.end()
			if err == io.EOF {
				return n, nil
			}
			return n, fmt.Errorf("read serial: %w", err)
		}
	}
}

func cleanLine(text string) string {
	text = strings.TrimRight(text, "\r\n")
	text = strings.ReplaceAll(text, "\x00", "")
	// A carriage return inside a line redraws it: keep what was drawn last.
	if i := strings.LastIndexByte(text, '\r'); i >= 0 && i < len(text)-1 {
		text = text[i+1:]
	}
	return strings.ReplaceAll(text, "\r", "")
}

func (s *Serial) add(text string) {
	now := time.Now()
	s.mu.Lock()
	l := Line{N: len(s.lines), Time: now, Text: text}
	s.lines = append(s.lines, l)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	if s.log != nil {
		fmt.Fprintf(s.log, "%s +%07.3f %s\n", now.UTC().Format("15:04:05.000"), now.Sub(s.start).Seconds(), text)
	}
}

func (s *Serial) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.ended = true
		close(s.changed)
		s.changed = make(chan struct{})
	}
}

// Lines returns a copy of every line so far.
func (s *Serial) Lines() []Line {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Line(nil), s.lines...)
}

// Mark returns the index the next line will get; pass it to ExpectFrom to
// look only at later output (e.g. after a reset).
func (s *Serial) Mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.lines)
}

// Expect waits for a line matching re after the previous Expect's match and
// moves the cursor past it.
func (s *Serial) Expect(ctx context.Context, re *regexp.Regexp) (Line, error) {
	s.mu.Lock()
	from := s.cursor
	s.mu.Unlock()
	l, err := s.ExpectFrom(ctx, from, re)
	if err == nil {
		s.mu.Lock()
		s.cursor = l.N + 1
		s.mu.Unlock()
	}
	return l, err
}

// ExpectFrom waits for the first line at index >= from matching re. It fails
// when ctx ends or the stream ends without a match. The cursor is not moved.
func (s *Serial) ExpectFrom(ctx context.Context, from int, re *regexp.Regexp) (Line, error) {
	for {
		s.mu.Lock()
		for i := from; i < len(s.lines); i++ {
			if re.MatchString(s.lines[i].Text) {
				l := s.lines[i]
				s.mu.Unlock()
				return l, nil
			}
		}
		from = max(from, len(s.lines))
		ended, changed := s.ended, s.changed
		s.mu.Unlock()
		if ended {
			return Line{}, fmt.Errorf("expect %q: console closed (VM exited)", re)
		}
		select {
		case <-ctx.Done():
			return Line{}, fmt.Errorf("expect %q: %w", re, ctx.Err())
		case <-changed:
		}
	}
}

// Tail returns the last n lines joined, for failure messages.
func (s *Serial) Tail(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	first := max(0, len(s.lines)-n)
	var b strings.Builder
	for _, l := range s.lines[first:] {
		b.WriteString(l.Text)
		b.WriteByte('\n')
	}
	return b.String()
}

// openLog creates path for writing (used for serial logs).
func openLog(path string) (*os.File, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create log: %w", err)
	}
	return f, nil
}
