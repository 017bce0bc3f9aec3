package rbd

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	hostIP  = "10.0.0.5"
	prevOwn = "10.0.0.5:0/1111"
)

func owned(addr string) Observation {
	a := MustParseAddr(addr)
	return Observation{
		Owners:   []LockOwner{{Addr: a, Exclusive: true}},
		Lockers:  Lockers{Tag: "internal", Lockers: []Locker{{Client: "client.4111", Cookie: "auto 18446462598732840961", Addr: a}}},
		Watchers: []Watcher{{Addr: a, ID: 4111, Cookie: 18446462598732840961}},
	}
}

func baseInput() Input {
	ip := netip.MustParseAddr(hostIP)
	return Input{Host: "cm4-03", Image: Image{Pool: "rbd", Name: "cm4-03-root"}, HostIP: ip, CallerIP: ip, Booting: true,
		Recorded: MustParseAddr(prevOwn), Policy: Policy{RemoveRangeBlocklist: true, BlocklistExpiry: time.Hour}}
}

func TestDecide(t *testing.T) {
	whole := BlocklistEntry{Addr: MustParseAddr(hostIP + ":0/0")}
	cidr := BlocklistEntry{Range: netip.MustParsePrefix("10.0.0.0/24")}
	exact := BlocklistEntry{Addr: MustParseAddr(hostIP + ":0/999")}
	otherWhole := BlocklistEntry{Addr: MustParseAddr("10.0.0.6:0/0")}
	tests := []struct {
		name    string
		mod     func(*Input)
		actions []ActionKind
		reason  Reason
		holder  string
		note    string
	}{
		// rule 1
		{name: "not booting", mod: func(in *Input) { in.Booting = false; in.Observed = owned(prevOwn) }, reason: ReasonNotBooting},
		{name: "wrong caller", mod: func(in *Input) { in.CallerIP = netip.MustParseAddr("10.0.0.9"); in.Observed = owned(prevOwn) }, reason: ReasonWrongCaller},
		{name: "caller as v4-mapped v6", mod: func(in *Input) { in.CallerIP = netip.MustParseAddr("::ffff:10.0.0.5") }, actions: nil, note: "not locked"},
		{name: "no host ip", mod: func(in *Input) { in.HostIP = netip.Addr{} }, reason: ReasonNoHostIP},
		// nothing to do
		{name: "unlocked", mod: func(in *Input) {}, actions: nil, note: "not locked"},
		// rule 2
		{name: "recorded owner", mod: func(in *Input) { in.Observed = owned(prevOwn) },
			actions: []ActionKind{ActBlocklistAdd, ActBreakLock}, note: "still has a watch"},
		{name: "recorded owner already blocklisted", mod: func(in *Input) {
			in.Observed = owned(prevOwn)
			in.Observed.Blocklist = []BlocklistEntry{{Addr: MustParseAddr(prevOwn)}}
		}, actions: []ActionKind{ActBreakLock}, note: "already blocklisted"},
		// rule 3
		{name: "unrecorded same ip, refuse", mod: func(in *Input) { in.Observed = owned(hostIP + ":0/2222") },
			reason: ReasonUnrecordedOwner, holder: hostIP + ":0/2222"},
		{name: "nothing recorded, refuse", mod: func(in *Input) { in.Recorded = Addr{}; in.Observed = owned(prevOwn) },
			reason: ReasonUnrecordedOwner, holder: prevOwn},
		{name: "unrecorded same ip, break", mod: func(in *Input) {
			in.Observed = owned(hostIP + ":0/2222")
			in.Policy.BreakUnrecordedSameIP = true
		}, actions: []ActionKind{ActBlocklistAdd, ActBreakLock}},
		// rule 4
		{name: "other ip", mod: func(in *Input) { in.Observed = owned("10.0.0.7:0/1111") }, reason: ReasonForeignOwner, holder: "10.0.0.7:0/1111"},
		{name: "other ip even with break policy and recorded", mod: func(in *Input) {
			in.Recorded = MustParseAddr("10.0.0.7:0/1111")
			in.Policy.BreakUnrecordedSameIP = true
			in.Observed = owned("10.0.0.7:0/1111")
		}, reason: ReasonForeignOwner, holder: "10.0.0.7:0/1111"},
		{name: "external lock", mod: func(in *Input) {
			in.Observed = owned(prevOwn)
			in.Observed.Lockers.Tag = ""
			in.Observed.Lockers.Lockers[0].Cookie = "mylock"
		}, reason: ReasonExternalLock, holder: prevOwn},
		{name: "advisory lock without owner", mod: func(in *Input) {
			in.Observed = owned("10.0.0.7:0/1")
			in.Observed.Owners = nil
			in.Observed.Lockers.Tag = "admin"
		}, reason: ReasonExternalLock},
		{name: "shared lock", mod: func(in *Input) {
			in.Observed = owned(prevOwn)
			in.Observed.Owners[0].Exclusive = false
		}, reason: ReasonSharedLock},
		// rule 5
		{name: "whole-ip and cidr removed, exact kept", mod: func(in *Input) {
			in.Observed.Blocklist = []BlocklistEntry{whole, cidr, exact, otherWhole}
		}, actions: []ActionKind{ActBlocklistRemove, ActBlocklistRemove}, note: "left to expire"},
		{name: "removal after fence and break", mod: func(in *Input) {
			in.Observed = owned(prevOwn)
			in.Observed.Blocklist = []BlocklistEntry{whole}
		}, actions: []ActionKind{ActBlocklistAdd, ActBreakLock, ActBlocklistRemove}},
		{name: "range removal off", mod: func(in *Input) {
			in.Policy.RemoveRangeBlocklist = false
			in.Observed.Blocklist = []BlocklistEntry{cidr}
		}, reason: ReasonHostBlocklisted},
		{name: "refusal drops range removal", mod: func(in *Input) {
			in.Observed = owned("10.0.0.7:0/1")
			in.Observed.Blocklist = []BlocklistEntry{whole}
		}, reason: ReasonForeignOwner},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := baseInput()
			tt.mod(&in)
			p := Decide(in)
			if tt.reason != "" {
				if p.Refusal == nil || p.Refusal.Reason != tt.reason {
					t.Fatalf("plan %s, want refusal %s", p.Summary(), tt.reason)
				}
				if len(p.Actions) != 0 {
					t.Fatalf("refused plan has actions %v", p.Actions)
				}
				if tt.holder != "" && (p.Refusal.Holder.String() != tt.holder || !strings.Contains(p.Refusal.Message, tt.holder)) {
					t.Errorf("refusal %+v does not name holder %s", p.Refusal, tt.holder)
				}
				return
			}
			if p.Refused() {
				t.Fatalf("refused: %s", p.Summary())
			}
			var got []ActionKind
			for _, a := range p.Actions {
				got = append(got, a.Kind)
			}
			if !slices.Equal(got, tt.actions) {
				t.Fatalf("actions %v, want %v (%s)", got, tt.actions, p.Summary())
			}
			if tt.note != "" && !slices.ContainsFunc(p.Notes, func(n string) bool { return strings.Contains(n, tt.note) }) {
				t.Errorf("notes %q lack %q", p.Notes, tt.note)
			}
		})
	}
}

// TestDecideExactTargets: fencing and breaking name exactly the owner,
// with the policy's expiry; removals name exactly the covering entries.
func TestDecideExactTargets(t *testing.T) {
	in := baseInput()
	in.Policy.BlocklistExpiry = 90 * time.Minute
	in.Observed = owned(prevOwn)
	cidr := BlocklistEntry{Range: netip.MustParsePrefix("10.0.0.0/29")}
	in.Observed.Blocklist = []BlocklistEntry{cidr}
	p := Decide(in)
	want := []Action{
		{Kind: ActBlocklistAdd, Addr: MustParseAddr(prevOwn), Expiry: 90 * time.Minute},
		{Kind: ActBreakLock, Addr: MustParseAddr(prevOwn)},
		{Kind: ActBlocklistRemove, Entry: cidr},
	}
	if len(p.Actions) != len(want) {
		t.Fatalf("plan %s", p.Summary())
	}
	for i, a := range p.Actions {
		a.Why = ""
		if a != want[i] {
			t.Errorf("action %d = %+v, want %+v", i, a, want[i])
		}
	}
}

func TestPolicyFromConfigDefaults(t *testing.T) {
	p := PolicyFromConfig(configRBD("", nil, 0))
	if p.BreakUnrecordedSameIP || !p.RemoveRangeBlocklist || p.BlocklistExpiry != time.Hour {
		t.Fatalf("defaults = %+v", p)
	}
	f := false
	p = PolicyFromConfig(configRBD("break", &f, 5*time.Minute))
	if !p.BreakUnrecordedSameIP || p.RemoveRangeBlocklist || p.BlocklistExpiry != 5*time.Minute {
		t.Fatalf("explicit = %+v", p)
	}
}
