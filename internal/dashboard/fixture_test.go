package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"netboot/internal/boot"
	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/event"
	"netboot/internal/store"
	"netboot/internal/store/sqlite"
)

// t0 is the fixture's epoch; the fake clock stands at t0+1h.
var t0 = time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)

const inventoryYAML = `
server:
  address: 127.0.0.1
  api_token: test-token
  artifact_root: .
classes:
  rpi4:
    arch: arm64
    firmware: rpi
    smoke:
      - {name: ssh, kind: tcp, target: "{{.ip}}:22"}
      - {name: osd, kind: tcp, target: "{{.ip}}:6800"}
  x86:
    arch: amd64
    firmware: uefi
hosts:
  - {name: pi-ok, mac: "dc:a6:32:00:00:01", ip: 10.0.0.11, class: rpi4}
  - {name: pi-fail, mac: "dc:a6:32:00:00:02", ip: 10.0.0.12, class: rpi4}
  - {name: pi-stuck, mac: "dc:a6:32:00:00:03", ip: 10.0.0.13, class: rpi4}
  - {name: pi-regress, mac: "dc:a6:32:00:00:04", ip: 10.0.0.14, class: rpi4}
  - {name: pi-boot, mac: "dc:a6:32:00:00:05", ip: 10.0.0.15, class: rpi4}
  - {name: udoo-skip, mac: "00:c0:08:00:00:06", ip: 10.0.0.16, class: x86}
  - {name: pi-new, mac: "dc:a6:32:00:00:07", ip: 10.0.0.17, class: rpi4}
`

func inventory(t testing.TB) *config.Config {
	t.Helper()
	cfg, err := config.Parse("inventory.yaml", t.TempDir(), []byte(inventoryYAML))
	if err != nil {
		t.Fatalf("parse inventory: %v", err)
	}
	return cfg
}

// stagesFrom builds stage marks from (stage, duration) pairs starting at start.
func stagesFrom(start time.Time, pairs ...any) []boot.StageMark {
	var out []boot.StageMark
	at := start
	for i := 0; i < len(pairs); i += 2 {
		st, _ := event.ParseStage(pairs[i].(string))
		d := time.Duration(pairs[i+1].(int)) * time.Millisecond
		out = append(out, boot.StageMark{Stage: st, At: at, DurationMS: d.Milliseconds(), Via: event.FileFetched})
		at = at.Add(d)
	}
	return out
}

func healthyStages(start time.Time) []boot.StageMark {
	return stagesFrom(start, "dhcp", 800, "firmware", 1500, "kernel", 4200, "initramfs", 2600, "kernel-up", 1900,
		"init", 300, "network", 2100, "root-prepare", 1700, "root-map", 1300, "root-mount", 400,
		"switch-root", 6000, "userspace", 9000, "ready", 0)
}

func endOf(stages []boot.StageMark) time.Time {
	l := stages[len(stages)-1]
	return l.At.Add(time.Duration(l.DurationMS) * time.Millisecond)
}

// fixtureReports returns one boot history per host, oldest first, covering
// every outcome.
func fixtureReports() map[string][]boot.Report {
	ok := func(host string, start time.Time) boot.Report {
		st := healthyStages(start)
		return boot.Report{Host: host, Class: "rpi4", Started: start, Updated: endOf(st), Ended: endOf(st),
			Outcome: store.OutcomeSucceeded, Reason: boot.ReasonReady, LastStage: event.StageReady, Stages: st,
			Smoke: []boot.SmokeResult{{Name: "ssh", Kind: "tcp", Target: "10.0.0.11:22", OK: true, Attempts: 1, Message: "ok"},
				{Name: "osd", Kind: "tcp", Target: "10.0.0.11:6800", OK: true, Attempts: 1, Message: "ok"}},
			RBD:          []boot.RBDAction{{Time: start.Add(15 * time.Second), Kind: event.RootPrepared, Message: "lock free; nothing to do"}},
			SmokePlanned: 2}
	}
	failStages := stagesFrom(t0.Add(10*time.Minute), "dhcp", 700, "firmware", 1400, "kernel", 4000, "initramfs", 2500,
		"kernel-up", 1800, "init", 300, "network", 2000, "root-prepare", 31000)
	fail := boot.Report{Host: "pi-fail", Class: "rpi4", Started: failStages[0].At, Ended: endOf(failStages), Updated: endOf(failStages),
		Outcome: store.OutcomeFailed, Reason: boot.ReasonSignature, Message: "rbd-lock-failed: the kernel rbd client could not take the lock",
		LastStage: event.StageRootPrepare, Stages: failStages,
		Failure: &boot.Failure{Stage: event.StageRootMap, Signature: "rbd-lock-failed", Message: "rbd: rbd0: failed to acquire lock: -108",
			Explain: "the kernel rbd client could not take the image's exclusive lock", Hint: "check `netbootctl rbd status HOST`",
			Line: "rbd: rbd0: failed to acquire lock: -108", Excerpt: []string{"libceph: client4172 fsid 5d1b", "rbd: rbd0: failed to acquire lock: -108"}},
		Signatures: []boot.SignatureHit{{Name: "rbd-lock-failed", Stage: event.StageRootMap, Fatal: true, Time: endOf(failStages),
			Line: "rbd: rbd0: failed to acquire lock: -108", Explain: "the kernel rbd client could not take the lock"}},
		RBD: []boot.RBDAction{{Time: failStages[7].At, Kind: event.RootRefused, Failed: true,
			Message: "lock owner 10.0.0.99:0/123 is on another IP; never broken", Attrs: map[string]string{"owner": "10.0.0.99:0/123"}}},
		Fetches: []boot.Fetch{{Time: failStages[1].At, Proto: "tftp", File: "start4.elf", Role: "firmware", Bytes: "2228768"}}}
	stuckStages := stagesFrom(t0.Add(20*time.Minute), "dhcp", 900, "firmware", 1600, "kernel", 4100, "initramfs", 2400,
		"kernel-up", 1700, "init", 300, "network", 2200, "root-prepare", 1500, "root-map", 90000)
	stuck := boot.Report{Host: "pi-stuck", Class: "rpi4", Started: stuckStages[0].At, Ended: endOf(stuckStages), Updated: endOf(stuckStages),
		Outcome: store.OutcomeStuck, Reason: boot.ReasonDeadline, Message: "no progress past root-map within 1m30s",
		LastStage: event.StageRootMap, Stages: stuckStages,
		Failure: &boot.Failure{Stage: event.StageRootMap, Signature: "rbd-breaking-lock", Message: "no progress past root-map within 1m30s"}}
	regStart := t0.Add(30 * time.Minute)
	reg := ok("pi-regress", regStart)
	reg.Outcome, reg.Reason, reg.Message = store.OutcomeFailed, boot.ReasonRegression, "regression: 1 of 2 smoke checks failed"
	reg.Stages = reg.Stages[:len(reg.Stages)-1]
	reg.Stages[len(reg.Stages)-1].DurationMS = 12000
	reg.LastStage = event.StageUserspace
	reg.Ended, reg.Updated = endOf(reg.Stages), endOf(reg.Stages)
	reg.Smoke[1].OK, reg.Smoke[1].Message, reg.Smoke[1].Attempts = false, "dial tcp 10.0.0.14:6800: connection refused", 6
	reg.Regressions = []string{"osd"}
	reg.Failure = &boot.Failure{Stage: event.StageReady, Message: reg.Message}
	reg.Expected = &boot.Expectation{Host: "pi-regress", Announced: regStart.Add(-time.Minute), Deadline: regStart.Add(14 * time.Minute),
		Baseline: []boot.SmokeResult{{Name: "ssh", Kind: "tcp", OK: true}, {Name: "osd", Kind: "tcp", OK: true}}}
	progStages := stagesFrom(t0.Add(59*time.Minute), "dhcp", 800, "firmware", 1500, "kernel", 4200, "initramfs", 0)
	prog := boot.Report{Host: "pi-boot", Class: "rpi4", Started: progStages[0].At, Updated: progStages[3].At,
		Outcome: store.OutcomeInProgress, LastStage: event.StageInitramfs, Stages: progStages}
	skip := boot.Report{Host: "udoo-skip", Class: "x86", Started: t0.Add(40 * time.Minute), Ended: t0.Add(55 * time.Minute),
		Updated: t0.Add(55 * time.Minute), Outcome: store.OutcomeSkipped, Reason: boot.ReasonNoBoot,
		Message: "the announced reboot started no boot attempt within 15m0s", Stages: []boot.StageMark{}}
	return map[string][]boot.Report{
		"pi-ok":      {ok("pi-ok", t0), ok("pi-ok", t0.Add(5*time.Minute))},
		"pi-fail":    {ok("pi-fail", t0.Add(2*time.Minute)), fail},
		"pi-stuck":   {stuck},
		"pi-regress": {ok("pi-regress", t0.Add(3*time.Minute)), reg},
		"pi-boot":    {ok("pi-boot", t0.Add(4*time.Minute)), prog},
		"udoo-skip":  {skip},
	}
}

// saveReports stores reports as the tracker does: a boot row whose State is
// the report's JSON.
func saveReports(t testing.TB, db store.Boots, reports []boot.Report) []int64 {
	t.Helper()
	ctx := context.Background()
	var ids []int64
	for _, r := range reports {
		b := store.Boot{Host: r.Host, Started: r.Started, Updated: r.Updated, Ended: r.Ended, Stage: r.LastStage,
			Outcome: r.Outcome, Reason: r.Reason}
		if err := db.CreateBoot(ctx, &b); err != nil {
			t.Fatal(err)
		}
		r.BootID, r.Seq = b.ID, b.Seq
		state, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.State = state
		if err := db.UpdateBoot(ctx, &b); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, b.ID)
	}
	return ids
}

type fixture struct {
	db    *sqlite.DB
	srv   *Server
	clock *clock.Fake
	ids   map[string][]int64 // boot ids per host, oldest first
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	db, err := sqlite.Open(context.Background(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fixture{db: db, clock: clock.NewFake(t0.Add(time.Hour)), ids: map[string][]int64{}}
	reports := fixtureReports()
	for _, host := range []string{"pi-ok", "pi-fail", "pi-stuck", "pi-regress", "pi-boot", "udoo-skip"} {
		f.ids[host] = saveReports(t, db, reports[host])
	}
	failID := f.ids["pi-fail"][1]
	lines := []store.LogLine{}
	for i, text := range []string{"Booting Linux on physical CPU 0x0", "Linux version 6.1.0-rpi (gcc 12)", "nbinit: network up 10.0.0.12",
		"libceph: client4172 fsid 5d1b", "rbd: rbd0: failed to acquire lock: -108", "nbinit: root-map failed, retrying"} {
		lines = append(lines, store.LogLine{Time: t0.Add(10*time.Minute + time.Duration(i*3)*time.Second), Host: "pi-fail",
			BootID: failID, Seq: int64(i), KTime: int64(i) * 1500000, Level: 6, Text: text})
	}
	lines[4].Level = 3
	if err := db.AppendLogs(context.Background(), lines); err != nil {
		t.Fatal(err)
	}
	cat, err := boot.NewCatalogue(nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Inventory: inventory(t), Boots: db, Logs: db, Clock: f.clock, Catalogue: cat})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	return f
}

func (f *fixture) bootID(host string, i int) int64 {
	ids := f.ids[host]
	if i < 0 {
		i += len(ids)
	}
	return ids[i]
}

func (f *fixture) path(format string, args ...any) string { return fmt.Sprintf(format, args...) }

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
