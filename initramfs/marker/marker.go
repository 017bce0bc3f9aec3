// Package marker defines the machine-readable line nbinit writes to
// /dev/kmsg (and so to netconsole and the serial console) for each boot
// stage. nbinit formats markers with Marker.String; the netconsole collector
// and the boot tracker recognise them in kernel log lines with Parse.
//
// The format is one line:
//
//	nbinit: stage=<stage> status=<ok|failed|start> [attempt=<n>] [key=value ...] [msg=<value>]
//
// Keys are sorted, msg comes last; a value is written bare when it consists
// only of characters in [A-Za-z0-9._:/@,+-] and otherwise double-quoted with
// Go (strconv) quoting. Stage names are those of netboot/internal/event.
// This package has no dependencies beyond the standard library so that the
// initramfs and the server share it.
package marker

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Prefix starts every marker (after any kernel log header).
const Prefix = "nbinit: "

// Status values.
const (
	StatusStart  = "start"
	StatusOK     = "ok"
	StatusFailed = "failed"
)

// MaxLen bounds a formatted marker: /dev/kmsg rejects records longer than
// 992 bytes including the "<6>" level prefix and the newline.
const MaxLen = 980

// Marker is one stage report.
type Marker struct {
	Stage   string
	Status  string
	Attempt int // 0 means not written
	Message string
	Attrs   map[string]string
}

// OK reports whether the status is ok.
func (m Marker) OK() bool { return m.Status == StatusOK }

// String formats the marker, truncating the message (then attributes) so
// that the line fits in MaxLen.
func (m Marker) String() string {
	var b strings.Builder
	b.WriteString(Prefix)
	b.WriteString("stage=" + quote(m.Stage))
	b.WriteString(" status=" + quote(m.Status))
	if m.Attempt > 0 {
		b.WriteString(" attempt=" + strconv.Itoa(m.Attempt))
	}
	for _, k := range sortedKeys(m.Attrs) {
		if !validKey(k) {
			continue
		}
		field := " " + k + "=" + quote(m.Attrs[k])
		if b.Len()+len(field) > MaxLen-16 {
			break
		}
		b.WriteString(field)
	}
	if m.Message != "" {
		b.WriteString(" msg=" + fitQuoted(m.Message, MaxLen-b.Len()-5))
	}
	return b.String()
}

func fitQuoted(s string, room int) string {
	q := quote(s)
	for len(q) > room && len(s) > 0 {
		cut := len(s) - (len(q) - room) - 3
		if cut < 0 {
			cut = 0
		}
		for cut > 0 && !utf8Start(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
		q = quote(s)
		if cut == 0 {
			break
		}
	}
	return q
}

func utf8Start(c byte) bool { return c&0xC0 != 0x80 }

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func validKey(k string) bool {
	if k == "" || k == "stage" || k == "status" || k == "attempt" || k == "msg" {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func bareOK(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._:/@,+-", c)) {
			return false
		}
	}
	return true
}

func quote(s string) string {
	if bareOK(s) {
		return s
	}
	return strconv.Quote(s)
}

// ErrNoMarker means the line holds no nbinit marker.
var ErrNoMarker = errors.New("no nbinit marker")

// Find returns the marker text in a log line (which may carry a kernel or
// netconsole header before it), or ok=false.
func Find(line string) (string, bool) {
	i := strings.Index(line, Prefix+"stage=")
	if i < 0 {
		return "", false
	}
	return strings.TrimRight(line[i:], "\r\n"), true
}

// Parse extracts the marker from a log line. Lines without one return
// ErrNoMarker; malformed markers return a descriptive error.
func Parse(line string) (Marker, error) {
	text, ok := Find(line)
	if !ok {
		return Marker{}, ErrNoMarker
	}
	fields, err := splitFields(text[len(Prefix):])
	if err != nil {
		return Marker{}, fmt.Errorf("parse nbinit marker: %w", err)
	}
	return fromFields(fields)
}

func fromFields(fields [][2]string) (Marker, error) {
	var m Marker
	for _, kv := range fields {
		k, v := kv[0], kv[1]
		switch k {
		case "stage":
			m.Stage = v
		case "status":
			m.Status = v
		case "msg":
			m.Message = v
		case "attempt":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return Marker{}, fmt.Errorf("parse nbinit marker: attempt %q is not a count", v)
			}
			m.Attempt = n
		default:
			if m.Attrs == nil {
				m.Attrs = map[string]string{}
			}
			m.Attrs[k] = v
		}
	}
	if m.Stage == "" {
		return Marker{}, errors.New("parse nbinit marker: empty stage")
	}
	switch m.Status {
	case StatusStart, StatusOK, StatusFailed:
	default:
		return Marker{}, fmt.Errorf("parse nbinit marker: status %q is not one of start, ok, failed", m.Status)
	}
	return m, nil
}

// splitFields splits `k=v k="quoted v"` into pairs.
func splitFields(s string) ([][2]string, error) {
	var out [][2]string
	for {
		s = strings.TrimLeft(s, " ")
		if s == "" {
			return out, nil
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("field %q has no key=value", cutAt(s, 20))
		}
		key := s[:eq]
		if strings.ContainsAny(key, " \"") {
			return nil, fmt.Errorf("bad key %q", cutAt(key, 20))
		}
		rest := s[eq+1:]
		val, tail, err := splitValue(rest)
		if err != nil {
			return nil, fmt.Errorf("value of %s: %w", key, err)
		}
		out = append(out, [2]string{key, val})
		s = tail
	}
}

func splitValue(s string) (val, tail string, err error) {
	if strings.HasPrefix(s, `"`) {
		q, err := strconv.QuotedPrefix(s)
		if err != nil {
			return "", "", fmt.Errorf("unterminated or bad quoting: %w", err)
		}
		v, err := strconv.Unquote(q)
		if err != nil {
			return "", "", err
		}
		return v, s[len(q):], nil
	}
	sp := strings.IndexByte(s, ' ')
	if sp < 0 {
		return s, "", nil
	}
	return s[:sp], s[sp:], nil
}

func cutAt(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
