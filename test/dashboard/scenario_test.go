package dashboard

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"netboot/internal/event"
)

// step is one line of testdata/scenario.jsonl.
type step struct {
	Comment  string            `json:"comment"`
	Do       string            `json:"do"`    // event (default), netconsole, expect-reboot, stop-smoke-peer, wait
	Host     string            `json:"host"`  // inventory name
	After    string            `json:"after"` // advance the fake clock first
	Kind     string            `json:"kind"`
	Stage    string            `json:"stage"`
	Failed   bool              `json:"failed"`
	Message  string            `json:"message"`
	Attrs    map[string]string `json:"attrs"`
	Text     string            `json:"text"`     // netconsole line
	Deadline string            `json:"deadline"` // expect-reboot

	after    time.Duration
	deadline time.Duration
	stage    event.Stage
}

// Step kinds.
const (
	doEvent      = "event"
	doNetconsole = "netconsole"
	doExpect     = "expect-reboot"
	doStopPeer   = "stop-smoke-peer"
	doWait       = "wait"
)

// maxAfter bounds one clock advance, so a typo cannot jump a year.
const maxAfter = time.Hour

// parseScenario reads a JSONL scenario; comment lines are skipped.
func parseScenario(data []byte) ([]step, error) {
	var out []step
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var s step
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			return nil, fmt.Errorf("parse scenario line %d: %w", n, err)
		}
		if s.Comment != "" && s.Do == "" && s.Host == "" {
			continue
		}
		if err := s.check(); err != nil {
			return nil, fmt.Errorf("parse scenario line %d: %w", n, err)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse scenario: %w", err)
	}
	return out, nil
}

// check validates a step and fills its parsed fields.
func (s *step) check() error {
	var err error
	if s.Do == "" {
		s.Do = doEvent
	}
	if s.Host == "" {
		return fmt.Errorf("a host is required")
	}
	if s.After != "" {
		if s.after, err = time.ParseDuration(s.After); err != nil || s.after < 0 || s.after > maxAfter {
			return fmt.Errorf("after %q: want a duration between 0 and %s", s.After, maxAfter)
		}
	}
	switch s.Do {
	case doEvent:
		if s.Kind == "" {
			return fmt.Errorf("an event needs a kind")
		}
		if s.stage, err = parseStage(s.Stage); err != nil {
			return err
		}
	case doNetconsole:
		if s.Text == "" || strings.ContainsAny(s.Text, "\n\r") {
			return fmt.Errorf("a netconsole step needs one line of text")
		}
	case doExpect:
		if s.deadline, err = time.ParseDuration(s.Deadline); err != nil || s.deadline <= 0 || s.deadline > maxAfter {
			return fmt.Errorf("deadline %q: want a positive duration up to %s", s.Deadline, maxAfter)
		}
	case doStopPeer, doWait:
	default:
		return fmt.Errorf("unknown step %q", s.Do)
	}
	return nil
}

func parseStage(name string) (event.Stage, error) {
	if name == "" {
		return event.StageNone, nil
	}
	return event.ParseStage(name)
}

// event is the step's event at time at.
func (s *step) event(at time.Time) event.Event {
	return event.Event{Time: at, Host: s.Host, Kind: event.Kind(s.Kind), Stage: s.stage, Failed: s.Failed,
		Message: s.Message, Attrs: s.Attrs}
}

func loadScenario(t testing.TB) []step {
	t.Helper()
	data, err := os.ReadFile("testdata/scenario.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	steps, err := parseScenario(data)
	if err != nil {
		t.Fatal(err)
	}
	return steps
}

func TestParseScenario(t *testing.T) {
	tests := []struct {
		name, in string
		wantErr  string
		steps    int
	}{
		{"comment only", `{"comment": "x"}`, "", 0},
		{"event", `{"host": "h", "kind": "dhcp.request", "stage": "dhcp", "after": "1s"}`, "", 1},
		{"netconsole", `{"host": "h", "do": "netconsole", "text": "Linux version 6"}`, "", 1},
		{"no host", `{"kind": "dhcp.request"}`, "a host is required", 0},
		{"bad stage", `{"host": "h", "kind": "x", "stage": "boot"}`, "unknown stage", 0},
		{"bad after", `{"host": "h", "kind": "x", "after": "-1s"}`, "after", 0},
		{"huge after", `{"host": "h", "kind": "x", "after": "9000h"}`, "after", 0},
		{"unknown field", `{"host": "h", "kind": "x", "stag": "dhcp"}`, "unknown field", 0},
		{"unknown step", `{"host": "h", "do": "reboot"}`, "unknown step", 0},
		{"expect without deadline", `{"host": "h", "do": "expect-reboot"}`, "deadline", 0},
		{"multi-line text", `{"host": "h", "do": "netconsole", "text": "a\nb"}`, "one line", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps, err := parseScenario([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(steps) != tt.steps {
				t.Fatalf("%d steps, error %v; want %d steps", len(steps), err, tt.steps)
			}
		})
	}
	if steps := loadScenario(t); len(steps) < 50 {
		t.Errorf("the recorded scenario has only %d steps", len(steps))
	}
}

func FuzzParseScenario(f *testing.F) {
	data, err := os.ReadFile("testdata/scenario.jsonl")
	if err != nil {
		f.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n")[:12] {
		f.Add([]byte(line))
	}
	f.Add([]byte(`{"host": "h", "do": "expect-reboot", "deadline": "0s"}`))
	f.Add([]byte("{\"host\": \"h\"}\n{"))
	f.Fuzz(func(t *testing.T, in []byte) {
		steps, err := parseScenario(in)
		if err != nil {
			return
		}
		for _, s := range steps {
			if s.Host == "" || s.after < 0 || s.after > maxAfter {
				t.Fatalf("invalid step accepted: %+v", s)
			}
			if s.Do == doExpect && s.deadline <= 0 {
				t.Fatalf("expect-reboot without deadline accepted: %+v", s)
			}
		}
	})
}
