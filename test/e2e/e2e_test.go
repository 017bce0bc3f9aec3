package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"netboot/internal/boot"
	"netboot/internal/event"
	"netboot/test/cephlab"
	"netboot/test/harness"
)

// bootTimeout bounds one boot under TCG on a loaded 2-core machine
// (research: 10–15 s idle, up to ~60 s under load); it is a limit, not an
// assertion on speed.
const bootTimeout = 8 * time.Minute

// TestE2E runs the scenarios in order on one stack. The VM of the
// first scenario is reused by the reset and announced-reboot scenarios.
func TestE2E(t *testing.T) {
	s := newStack(t)
	vm := s.startVM(t, "vm1")
	t.Run("clean-first-boot", func(t *testing.T) { s.cleanFirstBoot(t, vm) })
	t.Run("hard-reset", func(t *testing.T) { s.hardReset(t, vm) })
	t.Run("announced-reboot-never-happens", func(t *testing.T) { s.announcedRebootSkipped(t, vm) })
	if err := vm.Quit(10 * time.Second); err != nil {
		t.Errorf("quit vm1: %v", err)
	}
	t.Run("image-held-by-other-host", func(t *testing.T) { s.heldByOtherHost(t) })
	t.Run("ceph-stopped-while-booting", func(t *testing.T) { s.cephStopped(t) })
	t.Run("peer-unaided-stale-lock-reset", func(t *testing.T) { s.unaidedPeer(t) })
}

// cleanFirstBoot: the first boot succeeds with every stage, the kernel's
// first line in the logs and the smoke check passed.
func (s *stack) cleanFirstBoot(t *testing.T, vm *harness.VM) {
	since := vm.Started.Add(-time.Second)
	code, rep, out := s.wait(t, since, bootTimeout)
	s.timings.add("clean first boot", rep, "")
	if rep != nil { // the logs are checked whatever the outcome
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		lcode, logs := s.ctl(t, ctx, "logs", hostName, "--boot", fmt.Sprint(rep.BootID))
		if lcode != 0 || !regexp.MustCompile(`Linux version \S+`).MatchString(logs) {
			t.Errorf("netbootctl logs %s --boot %d (exit %d) lacks the kernel's first line \"Linux version …\"; first lines:\n%s",
				hostName, rep.BootID, lcode, head(logs, 8))
		}
	}
	requireOutcome(t, vm, code, rep, out, 0, "succeeded")
	requireAllStages(t, rep)
	requireSmokePassed(t, rep)
}

// hardReset: a QMP system_reset leaves the kernel client's lock behind; the
// next boot's root-prepare fences exactly that client and breaks its lock,
// so the kernel never waits for the old watch to expire.
func (s *stack) hardReset(t *testing.T, vm *harness.VM) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	oldOwner, err := s.ceph.LockOwnerCLI(ctx, poolName, imageName)
	if err != nil || !strings.HasPrefix(oldOwner, hostIP+":") {
		t.Fatalf("before the reset the lock owner is %q (%v), want the VM's kernel client at %s", oldOwner, err, hostIP)
	}
	mark := vm.Serial.Mark()
	since := time.Now()
	if err := vm.Reset(); err != nil {
		t.Fatalf("system_reset: %v", err)
	}
	code, rep, out := s.wait(t, since, bootTimeout)
	note := "old client " + oldOwner
	for _, m := range []struct{ name, re string }{
		{"root-map", `nbinit: stage=root-map status=ok`}, {"first write", `e2e: userspace up`},
	} {
		if l, err := vm.Serial.ExpectFrom(ctx, mark, regexp.MustCompile(m.re)); err == nil {
			note += fmt.Sprintf("; reset→%s %.1fs", m.name, l.Time.Sub(since).Seconds())
			if m.name == "first write" {
				s.handover = l.Time.Sub(since)
			}
		}
	}
	s.timings.add("hard reset", rep, note)
	requireOutcome(t, vm, code, rep, out, 0, "succeeded")
	requireAllStages(t, rep)
	actions := rbdText(rep)
	for _, want := range []string{oldOwner, "blocklist"} {
		if !strings.Contains(actions, want) {
			t.Errorf("the report's RBD actions do not name %q:\n%s", want, actions)
		}
	}
	if !regexp.MustCompile(`(?i)break|broke`).MatchString(actions) {
		t.Errorf("the report's RBD actions do not name the broken lock:\n%s", actions)
	}
	// The kernel waited for nobody: it neither polled for the old owner nor
	// broke the lock itself (both happen only while the stale watch lives).
	for _, l := range vm.Serial.Lines()[mark:] {
		if strings.Contains(l.Text, "no lock owners detected") || strings.Contains(l.Text, "breaking header lock") {
			t.Errorf("the kernel had to wait for the stale lock itself: %q", l.Text)
		}
	}
	t.Logf("root-prepare → root-map: %s", stageDuration(rep, event.StageRootPrepare))
	newOwner, err := s.ceph.LockOwnerCLI(ctx, poolName, imageName)
	if err != nil || newOwner == oldOwner || !strings.HasPrefix(newOwner, hostIP+":") {
		t.Errorf("after the hand-over the lock owner is %q (%v), want a new client of %s", newOwner, err, hostIP)
	}
}

// announcedRebootSkipped: a reboot is announced, the VM is paused instead;
// the announcement ends as skipped and `netbootctl wait` exits 2.
func (s *stack) announcedRebootSkipped(t *testing.T, vm *harness.VM) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code, out := s.ctl(t, ctx, "reboot-expect", hostName, "--deadline", "10s", "--json")
	if code != 0 {
		t.Fatalf("netbootctl reboot-expect exit %d: %s", code, out)
	}
	var x boot.Expectation
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &x); err != nil {
		t.Fatalf("reboot-expect output: %v: %s", err, out)
	}
	if err := vm.Pause(); err != nil {
		t.Fatalf("pause: %v", err)
	}
	defer vm.Resume()
	wcode, rep, wout := s.wait(t, x.Announced, 3*time.Minute)
	s.timings.add("announced reboot, VM paused", rep, "")
	if wcode != 2 {
		t.Errorf("netbootctl wait exit %d, want 2 (skipped); output:\n%s", wcode, wout)
	}
	if rep != nil && rep.Outcome != "skipped" || rep == nil && !strings.Contains(wout, "skipped") {
		t.Errorf("outcome is not skipped:\n%s", wout)
	}
}

// heldByOtherHost: a librbd client on another address holds the image's
// lock; the boot fails at root-prepare naming it, and the lock stays.
func (s *stack) heldByOtherHost(t *testing.T) {
	s.clearLocks(t)
	peer := s.ns.AddPeer(t, "", netip.MustParsePrefix(otherIP+"/24"))
	holder, err := s.ceph.StartHolder(t, cephlab.HolderConfig{Image: imageName, Bind: otherIP, NetNS: peer.Name}, time.Minute)
	if err != nil {
		t.Fatalf("start the other host's lock holder: %v", err)
	}
	// The holder writes into the image's first blocks: give the next
	// scenario a fresh root filesystem.
	defer func() { holder.Kill(); s.clearLocks(t); s.reimportRoot(t) }()
	since := time.Now()
	vm := s.startVM(t, "vm1-held")
	defer vm.Quit(10 * time.Second)
	code, rep, out := s.wait(t, since, bootTimeout)
	s.timings.add("image held by another host", rep, "holder "+holder.Addr)
	if rep != nil {
		t.Logf("report: outcome %s, reason %q, failure %+v", rep.Outcome, rep.Reason, rep.Failure)
	}
	requireOutcome(t, vm, code, rep, out, 1, "failed")
	if rep.Failure == nil || rep.Failure.Stage != event.StageRootPrepare {
		t.Errorf("failure = %+v, want one at root-prepare", rep.Failure)
	}
	if text := reportText(rep); !strings.Contains(text, holder.Addr) && !strings.Contains(text, otherIP) {
		t.Errorf("the report does not name the holder %s:\n%s", holder.Addr, text)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if owner, err := s.ceph.LockOwnerCLI(ctx, poolName, imageName); err != nil || owner != holder.Addr {
		t.Errorf("lock owner after the refused boot = %q (%v), want the untouched holder %s", owner, err, holder.Addr)
	}
}

// cephStopped: with the cluster down the boot fails or gets stuck at
// root-prepare with a reason that says so; once Ceph is back, the next
// boot succeeds.
func (s *stack) cephStopped(t *testing.T) {
	if err := s.ceph.Stop(); err != nil {
		t.Fatalf("stop ceph: %v", err)
	}
	since := time.Now()
	vm := s.startVM(t, "vm1-cephdown")
	defer vm.Quit(10 * time.Second)
	code, rep, out := s.wait(t, since, bootTimeout)
	s.timings.add("ceph stopped", rep, "")
	if rep != nil {
		t.Logf("report: outcome %s, reason %q, failure %+v", rep.Outcome, rep.Reason, rep.Failure)
	}
	if code != 1 && code != 2 || rep == nil || (rep.Outcome != "failed" && rep.Outcome != "stuck") {
		t.Errorf("with Ceph down: wait exit %d, want 1 or 2 with a failed/stuck report:\n%s\n--- serial:\n%s", code, out, vm.Serial.Tail(30))
	} else {
		if st := blockedStage(rep); st != event.StageRootPrepare {
			t.Errorf("the boot ended blocked at %s (failure %+v), want root-prepare", st, rep.Failure)
		}
		if text := strings.ToLower(reportText(rep)); !strings.Contains(text, "ceph") {
			t.Errorf("the reason does not say Ceph is unreachable:\n%s", reportText(rep))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.ceph.Restart(ctx); err != nil {
		t.Fatalf("restart ceph: %v", err)
	}
	since = time.Now()
	if err := vm.Reset(); err != nil {
		t.Fatalf("system_reset: %v", err)
	}
	code, rep, out = s.wait(t, since, bootTimeout)
	s.timings.add("next boot after Ceph is back", rep, "")
	requireOutcome(t, vm, code, rep, out, 0, "succeeded")
}

// clearLocks fences and removes whatever lock the image has (the test's
// own cleanup between scenarios, done with the Ceph CLI).
func (s *stack) clearLocks(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := s.ceph.Rbd(ctx, "lock", "ls", "--format", "json", poolName+"/"+imageName)
	if err != nil {
		t.Fatalf("rbd lock ls: %v", err)
	}
	var locks []struct{ ID, Locker, Address string }
	if err := json.Unmarshal([]byte(out), &locks); err != nil {
		t.Fatalf("rbd lock ls: %v: %s", err, out)
	}
	for _, l := range locks {
		if o, err := s.ceph.Ceph(ctx, "osd", "blocklist", "add", l.Address, "600"); err != nil {
			t.Fatalf("blocklist %s: %v: %s", l.Address, err, o)
		}
		if o, err := s.ceph.Rbd(ctx, "lock", "rm", poolName+"/"+imageName, l.ID, l.Locker); err != nil {
			t.Fatalf("rbd lock rm %s: %v: %s", l.Locker, err, o)
		}
	}
}

func requireOutcome(t *testing.T, vm *harness.VM, code int, rep *boot.Report, out string, wantCode int, wantOutcome string) {
	t.Helper()
	if code == wantCode && rep != nil && rep.Outcome == wantOutcome {
		return
	}
	t.Fatalf("netbootctl wait exit %d, want %d (%s); output:\n%s\n--- last serial lines:\n%s",
		code, wantCode, wantOutcome, out, vm.Serial.Tail(40))
}

func requireAllStages(t *testing.T, rep *boot.Report) {
	t.Helper()
	got := map[event.Stage]bool{}
	for _, m := range rep.Stages {
		got[m.Stage] = true
	}
	var missing []string
	for _, st := range event.Stages() {
		if !got[st] {
			missing = append(missing, st.String())
		}
	}
	if len(missing) > 0 {
		t.Errorf("boot %d lacks stages %v", rep.BootID, missing)
	}
}

func requireSmokePassed(t *testing.T, rep *boot.Report) {
	t.Helper()
	if len(rep.Smoke) == 0 {
		t.Errorf("boot %d has no smoke results", rep.BootID)
	}
	for _, r := range rep.Smoke {
		if !r.OK {
			t.Errorf("smoke check %s failed: %s", r.Name, r.Message)
		}
	}
}

// rbdText is the report's RBD actions as text, for "names X" assertions.
func rbdText(rep *boot.Report) string {
	b, _ := json.MarshalIndent(rep.RBD, "", "  ")
	return string(b)
}

// reportText is the report's reason, message, failure and RBD actions.
func reportText(rep *boot.Report) string {
	b, _ := json.MarshalIndent(struct {
		Reason, Message string
		Failure         *boot.Failure
		RBD             []boot.RBDAction
	}{rep.Reason, rep.Message, rep.Failure, rep.RBD}, "", "  ")
	return string(b)
}

func stageDuration(rep *boot.Report, st event.Stage) time.Duration {
	for _, m := range rep.Stages {
		if m.Stage == st {
			return time.Duration(m.DurationMS) * time.Millisecond
		}
	}
	return -1
}

func head(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// blockedStage is the stage a failed or stuck boot could not complete: the
// failure's stage when it failed there, or the stage after the last one
// reached when it got stuck waiting for it.
func blockedStage(rep *boot.Report) event.Stage {
	if rep.Failure == nil {
		return event.StageNone
	}
	if rep.Outcome == "stuck" && rep.Failure.Stage == rep.LastStage && rep.LastStage < event.StageReady {
		return rep.LastStage + 1
	}
	return rep.Failure.Stage
}
