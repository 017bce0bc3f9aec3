package rbd

import (
	"net/netip"
	"testing"
)

func TestParseAddr(t *testing.T) {
	tests := []struct {
		in, want string
		whole    bool
		err      bool
	}{
		{in: "127.0.0.1:0/2715853268", want: "127.0.0.1:0/2715853268"},
		{in: "10.88.0.2:0/3800830946", want: "10.88.0.2:0/3800830946"},
		{in: "v2:127.0.0.1:0/264440475", want: "127.0.0.1:0/264440475"},
		{in: "v1:10.0.0.1:6789/0", want: "10.0.0.1:6789/0"},
		{in: "any:10.0.0.1:0/5", want: "10.0.0.1:0/5"},
		{in: "[v2:10.0.0.1:3300/0,v1:10.0.0.1:6789/0]", want: "10.0.0.1:3300/0"},
		{in: "[::1]:0/7", want: "[::1]:0/7"},
		{in: "10.0.0.5:0/0", want: "10.0.0.5:0/0", whole: true},
		{in: " 10.0.0.5:0/0\n", want: "10.0.0.5:0/0", whole: true},
		{in: "10.0.0.5:0", err: true},
		{in: "10.0.0.5/1", err: true},
		{in: "10.0.0.5:0/x", err: true},
		{in: "10.0.0.5:0/4294967296", err: true}, // nonce is 32 bits
		{in: "10.0.0.5:70000/1", err: true},
		{in: "host:0/1", err: true},
		{in: "[fe80::1%eth0]:0/1", err: true},
		{in: "", err: true},
	}
	for _, tt := range tests {
		a, err := ParseAddr(tt.in)
		if (err != nil) != tt.err {
			t.Errorf("ParseAddr(%q) err = %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if err != nil {
			continue
		}
		if a.String() != tt.want || a.IsWholeIP() != tt.whole {
			t.Errorf("ParseAddr(%q) = %s whole=%v, want %s whole=%v", tt.in, a, a.IsWholeIP(), tt.want, tt.whole)
		}
	}
}

func TestParseRange(t *testing.T) {
	tests := []struct{ in, want string }{
		{"127.0.9.0:0/24", "127.0.9.0/24"},
		{"cidr:127.0.0.0:0/31", "127.0.0.0/31"},
		{"10.1.2.3/16", "10.1.0.0/16"},
		{"10.1.2.0:0/33", ""},
		{"garbage", ""},
	}
	for _, tt := range tests {
		p, err := ParseRange(tt.in)
		got := ""
		if err == nil {
			got = p.String()
		}
		if got != tt.want {
			t.Errorf("ParseRange(%q) = %q (%v), want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestBlocklistEntryCovers(t *testing.T) {
	host := netip.MustParseAddr("10.0.0.5")
	tests := []struct {
		e    BlocklistEntry
		want bool
	}{
		{BlocklistEntry{Addr: MustParseAddr("10.0.0.5:0/0")}, true},
		{BlocklistEntry{Addr: MustParseAddr("10.0.0.5:0/123")}, false}, // exact: harmless
		{BlocklistEntry{Addr: MustParseAddr("10.0.0.6:0/0")}, false},
		{BlocklistEntry{Range: netip.MustParsePrefix("10.0.0.4/30")}, true},
		{BlocklistEntry{Range: netip.MustParsePrefix("10.0.0.8/30")}, false},
	}
	for _, tt := range tests {
		if got := tt.e.Covers(host); got != tt.want {
			t.Errorf("%s covers %s = %v, want %v", tt.e, host, got, tt.want)
		}
	}
}

// FuzzParseAddr: no panics, and every accepted address round-trips.
func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{"127.0.0.1:0/2715853268", "v2:127.0.0.1:0/1", "[v2:1.2.3.4:3300/0,v1:1.2.3.4:6789/0]",
		"[::1]:0/7", "10.0.0.5:0/0", "cidr:127.0.0.0:0/31", "1.2.3.4:0/", "[", "]:/", "v1:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddr(s)
		if err == nil {
			b, err := ParseAddr(a.String())
			if err != nil || b != a {
				t.Fatalf("round trip of %q: %s -> %v, %v", s, a, b, err)
			}
		}
		if p, err := ParseRange(s); err == nil && !p.IsValid() {
			t.Fatalf("ParseRange(%q) accepted an invalid prefix", s)
		}
	})
}
