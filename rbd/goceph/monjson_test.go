package goceph

import (
	"encoding/json"
	"testing"
	"time"

	"netboot/rbd"
)

func TestParseBlocklist(t *testing.T) {
	// Output captured from Ceph 16.2.15 (two concatenated arrays).
	out := []byte(`[{"addr":"127.0.0.1:0/2715853268","until":"2026-11-26T03:04:54.992216+0000"},{"addr":"10.0.0.5:0/0","until":"2026-11-26T03:05:00.000000+0000"}]` +
		`[{"range":"127.0.9.0:0/24","until":"2026-11-26T04:16:31.813843+0000"}]`)
	got, err := parseBlocklist(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1:0/2715853268", "10.0.0.5:0/0", "cidr:127.0.9.0/24"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i, e := range got {
		if e.String() != want[i] || e.Until.IsZero() {
			t.Errorf("entry %d = %s until %v, want %s", i, e, e.Until, want[i])
		}
	}
	if !got[1].Addr.IsWholeIP() || !got[2].IsRange() {
		t.Errorf("kinds wrong: %+v", got)
	}
	for _, bad := range []string{`[{"addr":"nonsense"}]`, `[{"addr":"1.2.3.4:0/1","until":"yesterday"}]`, `{`, `[][{"range":"x"}]`} {
		if _, err := parseBlocklist([]byte(bad)); err == nil {
			t.Errorf("parseBlocklist(%s) accepted", bad)
		}
	}
	if e, err := parseBlocklist([]byte("[][]")); err != nil || len(e) != 0 {
		t.Errorf("empty: %v %v", e, err)
	}
}

func TestMonCommands(t *testing.T) {
	add, _ := blocklistAddCmd(rbd.MustParseAddr("10.0.0.5:0/77"), time.Hour)
	if string(add) != `{"addr":"10.0.0.5:0/77","blocklistop":"add","expire":3600.0,"prefix":"osd blocklist"}` {
		t.Errorf("add = %s (expire must keep its decimal point)", add)
	}
	rm, _ := blocklistRmCmd(rbd.BlocklistEntry{Addr: rbd.MustParseAddr("10.0.0.5:0/0")})
	if string(rm) != `{"addr":"10.0.0.5:0/0","blocklistop":"rm","prefix":"osd blocklist"}` {
		t.Errorf("rm = %s", rm)
	}
	p, _ := rbd.ParseRange("10.0.0.0/24")
	rr, _ := blocklistRmCmd(rbd.BlocklistEntry{Range: p})
	if string(rr) != `{"addr":"10.0.0.0/24","blocklistop":"rm","prefix":"osd blocklist","range":"range"}` {
		t.Errorf("range rm = %s", rr)
	}
	caps := rbd.Caps{"osd": "allow rwx pool=rbd object_prefix rbd_data.1", "mon": "profile rbd"}
	c, _ := authGetOrCreateCmd("client.netboot-h", caps)
	var v struct {
		Caps []string `json:"caps"`
	}
	if err := json.Unmarshal(c, &v); err != nil || len(v.Caps) != 4 || v.Caps[0] != "mon" || v.Caps[2] != "osd" {
		t.Errorf("get-or-create = %s", c)
	}
}

func TestParseKey(t *testing.T) {
	for in, want := range map[string]string{
		`[{"entity":"client.x","key":"AQB==","caps":{}}]`: "AQB==",
		`{"key":"AQC=="}`: "AQC==",
	} {
		if got, err := parseKey([]byte(in)); err != nil || got != want {
			t.Errorf("parseKey(%s) = %q, %v", in, got, err)
		}
	}
	if _, err := parseKey([]byte(`[]`)); err == nil {
		t.Error("parseKey([]) accepted")
	}
}

func FuzzParseBlocklist(f *testing.F) {
	f.Add([]byte(`[{"addr":"127.0.0.1:0/2715853268","until":"2026-11-26T03:04:54.992216+0000"}][{"range":"127.0.9.0:0/24","until":"2026-11-26T04:16:31.813843+0000"}]`))
	f.Add([]byte(`[][]`))
	f.Add([]byte(`[{"addr":"cidr:10.0.0.0:0/8"}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := parseBlocklist(b)
		if err != nil {
			return
		}
		for _, e := range es {
			if e.IsRange() == e.Addr.IP.IsValid() {
				t.Fatalf("entry %+v is neither exactly an address nor a range", e)
			}
		}
	})
}

func TestDecodeCephString(t *testing.T) {
	if id, err := decodeCephString([]byte{12, 0, 0, 0, '1', '0', 'f', 'a', '6', 'b', '8', 'b', '4', '5', '6', '7'}); err != nil || id != "10fa6b8b4567" {
		t.Fatalf("id %q, %v", id, err)
	}
	for _, bad := range [][]byte{nil, {1, 0, 0}, {0, 0, 0, 0}, {5, 0, 0, 0, 'a'}} {
		if _, err := decodeCephString(bad); err == nil {
			t.Errorf("decodeCephString(%v) accepted", bad)
		}
	}
}
