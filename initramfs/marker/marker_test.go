package marker

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	tests := []struct {
		name string
		m    Marker
		want string
	}{
		{"bare", Marker{Stage: "network", Status: StatusOK}, "nbinit: stage=network status=ok"},
		{"attrs sorted, msg last", Marker{Stage: "network", Status: StatusOK, Attempt: 2,
			Attrs: map[string]string{"ip": "10.0.0.2/24", "iface": "eth0"}, Message: "lease from 10.0.0.1"},
			`nbinit: stage=network status=ok attempt=2 iface=eth0 ip=10.0.0.2/24 msg="lease from 10.0.0.1"`},
		{"quotes escaped", Marker{Stage: "root-prepare", Status: StatusFailed, Message: `409 "lock held"`},
			`nbinit: stage=root-prepare status=failed msg="409 \"lock held\""`},
		{"bad keys dropped", Marker{Stage: "init", Status: StatusStart, Attrs: map[string]string{"Bad Key": "x", "msg": "y", "": "z"}},
			"nbinit: stage=init status=start"},
		{"empty attr quoted", Marker{Stage: "init", Status: StatusOK, Attrs: map[string]string{"host": ""}},
			`nbinit: stage=init status=ok host=""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.m.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    Marker
		wantErr string
	}{
		{"extended netconsole header", "12,345,6789,-;nbinit: stage=network status=ok iface=eth0\n",
			Marker{Stage: "network", Status: "ok", Attrs: map[string]string{"iface": "eth0"}}, ""},
		{"plain header + quoted msg", `[    5.1] nbinit: stage=root-prepare status=failed attempt=3 msg="refused: lock held by 10.0.0.9:0/1"`,
			Marker{Stage: "root-prepare", Status: "failed", Attempt: 3, Message: "refused: lock held by 10.0.0.9:0/1"}, ""},
		{"no marker", "rbd: rbd0: capacity 268435456", Marker{}, "no nbinit marker"},
		{"bad status", "nbinit: stage=init status=maybe", Marker{}, "status"},
		{"bad attempt", "nbinit: stage=init status=ok attempt=x", Marker{}, "attempt"},
		{"unterminated quote", `nbinit: stage=init status=ok msg="oops`, Marker{}, "quoting"},
		{"field without =", "nbinit: stage=init status=ok junk", Marker{}, "key=value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.line)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse error = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse = %#v, want %#v", got, tt.want)
			}
		})
	}
	if _, err := Parse("hello"); !errors.Is(err, ErrNoMarker) {
		t.Errorf("Parse(no marker) = %v, want ErrNoMarker", err)
	}
}

func TestStringFitsKmsg(t *testing.T) {
	m := Marker{Stage: "root-map", Status: StatusFailed, Message: strings.Repeat("é\"x", 600),
		Attrs: map[string]string{"a": strings.Repeat("b", 300), "c": strings.Repeat("d", 300), "e": strings.Repeat("f", 300)}}
	s := m.String()
	if len(s) > MaxLen {
		t.Fatalf("len %d > MaxLen %d", len(s), MaxLen)
	}
	got, err := Parse(s)
	if err != nil {
		t.Fatalf("Parse(truncated): %v", err)
	}
	if !strings.HasSuffix(got.Message, "...") || got.Stage != "root-map" {
		t.Errorf("truncated marker parsed to %#v", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("nbinit: stage=network status=ok iface=eth0 msg=\"x y\"")
	f.Add("6,1,2,-;nbinit: stage=init status=start attempt=1")
	f.Add(`nbinit: stage=root-prepare status=failed msg="\xff\"`)
	f.Add("nbinit: stage= status=ok")
	f.Fuzz(func(t *testing.T, line string) {
		m, err := Parse(line)
		if err != nil {
			return
		}
		// Whatever parses must survive a round trip (attributes with keys
		// String would drop are the only loss).
		for k := range m.Attrs {
			if !validKey(k) {
				delete(m.Attrs, k)
			}
		}
		if len(m.Attrs) == 0 {
			m.Attrs = nil
		}
		s := m.String()
		if len(s) >= MaxLen-32 {
			return // truncated on purpose
		}
		again, err := Parse(s)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", s, err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip %q: %#v != %#v", s, again, m)
		}
	})
}
