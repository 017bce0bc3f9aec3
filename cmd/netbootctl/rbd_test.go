package main

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"netboot/internal/event"
	"netboot/internal/store"
	"netboot/rbd"
)

func TestRBDPrinters(t *testing.T) {
	owner := rbd.MustParseAddr("10.0.0.5:0/3800830946")
	until := time.Date(2026, 11, 26, 5, 0, 0, 0, time.UTC)
	st := rbd.Status{Host: "cm4-03", HostIP: "10.0.0.5", Image: rbd.Image{Pool: "rbd", Name: "cm4-03-root"}, Booting: true, BootID: 12,
		Recorded: &store.RBDClient{ClientAddr: owner.String(), ClientID: "client4130", BootID: 11, Time: until.Add(-time.Hour)},
		Observed: rbd.Observation{
			Owners:   []rbd.LockOwner{{Addr: owner, Exclusive: true}},
			Lockers:  rbd.Lockers{Tag: "internal", Lockers: []rbd.Locker{{Client: "client.4130", Cookie: "auto 18446462598732840961", Addr: owner}}},
			Watchers: []rbd.Watcher{{Addr: owner, ID: 4130, Cookie: 18446462598732840961}},
		},
		Blocklist: []rbd.BlocklistEntry{
			{Addr: rbd.MustParseAddr("10.0.0.5:0/0"), Until: until},
			{Addr: rbd.MustParseAddr("10.0.0.5:0/77"), Until: until},
			{Range: netip.MustParsePrefix("10.0.0.0/29"), Until: until},
		},
	}
	st.Recent = []event.Event{
		{Time: until.Add(-time.Hour), BootID: 11, Kind: event.RootMapped, Message: "mapped rbd/cm4-03-root as client4130 10.0.0.5:0/3800830946"},
		{Time: until, BootID: 12, Kind: event.RootRefused, Failed: true, Message: "lock of rbd/cm4-03-root is held by client.4200 10.0.0.9:0/1 on another IP"},
	}
	ip := netip.MustParseAddr("10.0.0.5")
	in := rbd.Input{Host: "cm4-03", Image: st.Image, HostIP: ip, CallerIP: ip, Booting: true, Recorded: owner,
		Observed: rbd.Observation{Owners: st.Observed.Owners, Lockers: st.Observed.Lockers, Watchers: st.Observed.Watchers, Blocklist: st.Blocklist},
		Policy:   rbd.Policy{RemoveRangeBlocklist: true, BlocklistExpiry: time.Hour}}
	booting := rbd.PlanView{Host: "cm4-03", Booting: true, Now: rbd.Result{Plan: rbd.Decide(in)}}
	in.Booting = false
	idle := rbd.PlanView{Host: "cm4-03", Now: rbd.Result{Plan: rbd.Decide(in)}}
	in.Booting = true
	in.Recorded = rbd.Addr{}
	idle.IfBooting = rbd.Result{Plan: rbd.Decide(in)}

	tests := []struct {
		golden string
		print  func(*bytes.Buffer)
	}{
		{"rbd-status.golden", func(b *bytes.Buffer) { printRBDStatus(b, st) }},
		{"rbd-plan-booting.golden", func(b *bytes.Buffer) { printRBDPlan(b, booting) }},
		{"rbd-plan-idle.golden", func(b *bytes.Buffer) { printRBDPlan(b, idle) }},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			var b bytes.Buffer
			tt.print(&b)
			path := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if !bytes.Equal(b.Bytes(), want) {
				t.Errorf("output differs from %s:\n%s", path, b.String())
			}
		})
	}
}
