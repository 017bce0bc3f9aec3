package boot

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/event"
	"netboot/internal/store"
)

// TestRecordedStreams feeds recorded netconsole streams (real boot lines
// from the QEMU and kernel-rbd research runs, with the failure lines of
// each case) to a boot that reached a given stage, and checks the
// signature, its stage and the outcome.
func TestRecordedStreams(t *testing.T) {
	cases := []struct {
		file       string
		reached    []step
		wantSigs   []string // every signature hit, in order
		wantFail   string   // signature that failed (or explains the stuck) boot
		wantStage  event.Stage
		wantResult string
		advance    time.Duration // clock advance after the stream
	}{
		{"vfs-no-root.log", x86ToRootMap[:8], []string{"vfs-no-root", "kernel-panic"}, "vfs-no-root", event.StageRootMount, store.OutcomeFailed, 0},
		{"initramfs-dhcp-failed.log", x86ToRootMap[:7], []string{"dhcp-timeout", "ipconfig-failed"}, "ipconfig-failed", event.StageNetwork, store.OutcomeFailed, 0},
		{"blockdev-eperm.log", x86ToRootMap, []string{"blockdev-eperm"}, "blockdev-eperm", event.StageRootMap, store.OutcomeFailed, 0},
		{"rbd-lock-timeout.log", x86ToRootMap, []string{"rbd-lock-failed"}, "rbd-lock-failed", event.StageRootMap, store.OutcomeStuck, time.Minute},
		{"hung-after-switch-root.log", append(append([]step{}, x86ToRootMap...), rootMount, switchRoot),
			[]string{"libceph-socket", "hung-task"}, "hung-task", event.StageUserspace, store.OutcomeStuck, 4 * time.Minute},
		{"systemd-start-limit.log", append(append([]step{}, x86ToRootMap...), rootMount, switchRoot),
			[]string{"systemd-start-limit", "systemd-unit-failed"}, "", event.StageUserspace, store.OutcomeInProgress, 0},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			clk := clock.NewFake(t0)
			tr := newTestTracker(t, testInventory(), memStore(t), clk)
			ctx := context.Background()
			for _, s := range tc.reached {
				clk.Advance(s.after)
				e := s.ev
				e.Host, e.Time = "udoo1", clk.Now()
				if _, err := tr.Record(ctx, e); err != nil {
					t.Fatal(err)
				}
			}
			lines := readLines(t, filepath.Join("testdata", "netconsole", tc.file))
			for _, l := range lines {
				clk.Advance(10 * time.Millisecond)
				tr.observe("udoo1", 0, clk.Now(), l)
			}
			clk.Advance(tc.advance)
			r, err := tr.Latest(ctx, "udoo1", time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, h := range r.Signatures {
				got = append(got, h.Name)
			}
			if !slices.Equal(got, tc.wantSigs) {
				t.Errorf("signatures = %v, want %v", got, tc.wantSigs)
			}
			if r.Outcome != tc.wantResult {
				t.Errorf("outcome = %s (%s), want %s", r.Outcome, r.Message, tc.wantResult)
			}
			if tc.wantFail == "" {
				if r.Failure != nil {
					t.Errorf("failure = %+v, want none", r.Failure)
				}
				return
			}
			if r.Failure == nil || r.Failure.Signature != tc.wantFail {
				t.Fatalf("failure = %+v, want signature %s", r.Failure, tc.wantFail)
			}
			sig := catalogueEntry(t, tr, tc.wantFail)
			if sig.Stage != tc.wantStage && r.Failure.Stage != tc.wantStage {
				t.Errorf("stage = %s (signature's %s), want %s", r.Failure.Stage, sig.Stage, tc.wantStage)
			}
			if !slices.Contains(r.Failure.Excerpt, r.Failure.Line) || len(r.Failure.Excerpt) < 2 {
				t.Errorf("excerpt %q does not quote the line %q with context", r.Failure.Excerpt, r.Failure.Line)
			}
		})
	}
}

func catalogueEntry(t *testing.T, tr *Tracker, name string) Signature {
	for _, s := range tr.Catalogue().Signatures() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no signature %s", name)
	return Signature{}
}

func readLines(t testing.TB, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// TestCatalogueCoversResearchList checks each entry of the research list
// against a real-looking line and a harmless look-alike.
func TestCatalogueCoversResearchList(t *testing.T) {
	cat, err := NewCatalogue([]config.Signature{{Name: "site-fsck", Stage: "root-mount", Match: `fsck\.ext4: .* UNEXPECTED INCONSISTENCY`,
		Explain: "fsck found damage", Hint: "run fsck by hand"}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ line, want string }{
		{"Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100", "kernel-panic"},
		{`VFS: Unable to mount root fs on "rbd0" or unknown-block(0,0)`, "vfs-no-root"},
		{"No filesystem could mount root, tried:  ext3 ext2 ext4", "no-root-fs"},
		{"Attempted to kill init! exitcode=0x00000200", "init-killed"},
		{"No working init found.  Try passing init= option to kernel.", "no-init"},
		{"Initramfs unpacking failed: invalid magic at start of compressed archive", "initramfs-unpack"},
		{"rbd: rbd0: failed to acquire exclusive lock: -108", "rbd-lock-failed"},
		{"rbd: rbd0: failed to break header lock: -13", "rbd-break-lock-failed"},
		{"rbd: rbd0: failed to blocklist client4130: -13", "rbd-blocklist-failed"},
		{"rbd: rbd0: breaking header lock owned by client4130", "rbd-breaking-lock"},
		{"rbd: rbd0: encountered watch error: -107", "rbd-watch-error"},
		{"libceph: connect (1)10.88.0.1:6789 error -101", "libceph-connect-error"},
		{"libceph: mon0 (1)10.88.0.1:6789 session lost, hunting for new mon", "libceph-session-lost"},
		{"libceph: mon0 (1)10.88.0.1:6789 feature set mismatch, my 107b84a842aca < server's 40107b84a842aca", "libceph-features"},
		{"IP-Config: Auto-configuration of network failed", "ipconfig-failed"},
		{"nbinit: dhcp: eth0: timed out after 30s", "dhcp-timeout"},
		{`nbinit: stage=network status=failed attempt=3 iface=eth0 msg="dhcp on eth0: no lease after 30s"`, "dhcp-timeout"},
		{"dracut-initqueue[312]: Warning: dracut-initqueue: timeout, still waiting for following initqueue hooks:", "dracut-timeout"},
		{"Gave up waiting for root file system device.  Common problems:", "emergency-shell"},
		{"netconsole: eth0 doesn't exist, aborting", "netconsole-no-dev"},
		{"nbinit: open /dev/rbd0: operation not permitted", "blockdev-eperm"},
		{"systemd[1]: ceph-osd@1.service: Start request repeated too quickly.", "systemd-start-limit"},
		{"Out of memory: Killed process 812 (ceph-osd) total-vm:1234kB", "oom"},
		{"ceph-osd invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP)", "oom-invoked"},
		{"INFO: task jbd2/rbd0-8:211 blocked for more than 120 seconds.", "hung-task"},
		{"watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [kworker/1:2:93]", "soft-lockup"},
		{"Watchdog detected hard LOCKUP on cpu 2", "hard-lockup"},
		{"rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:", "rcu-stall"},
		{"BUG: kernel NULL pointer dereference, address: 0000000000000008", "kernel-oops"},
		{"general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] SMP", "general-protection"},
		{"EXT4-fs warning (device rbd0): ext4_multi_mount_protect:326: MMP interval 42 higher than expected, please wait.", "ext4-mmp"},
		{"fsck.ext4: /dev/rbd0: UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY.", "site-fsck"},
		{"rbd: rbd0: capacity 268435456 features 0x5", ""},
		{"libceph: mon0 (1)10.88.0.1:6789 session established", ""},
		{"systemd[1]: Reached target Multi-User System.", ""},
		{"nbinit: map rbd/udoo1-root: connection timed out (retrying in 1s)", ""},
	}
	for _, tc := range cases {
		sig, ok := cat.Match(tc.line)
		if got := map[bool]string{true: sig.Name}[ok]; got != tc.want {
			t.Errorf("Match(%q) = %q, want %q", tc.line, got, tc.want)
		}
	}
}

func TestCatalogueRejectsBadOperatorSignature(t *testing.T) {
	for _, s := range []config.Signature{{Name: "bad-re", Stage: "init", Match: "("}, {Name: "bad-stage", Stage: "nope", Match: "x"}} {
		if _, err := NewCatalogue([]config.Signature{s}); err == nil {
			t.Errorf("NewCatalogue(%s) = nil error", s.Name)
		}
	}
}

// FuzzCatalogueMatch checks that matching never panics and that the
// prefilter never hides a line its regex matches.
func FuzzCatalogueMatch(f *testing.F) {
	for _, s := range []string{"Kernel panic - not syncing: x", "rbd: rbd0: failed to acquire lock: -110",
		"nbinit: open /dev/rbd0: operation not permitted", "", "\x00\xff", "VFS: Cannot open root device \"x\" or y: error -6"} {
		f.Add(s)
	}
	cat, err := NewCatalogue(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, line string) {
		sig, ok := cat.Match(line)
		for _, s := range cat.sigs {
			if s.re.MatchString(line) {
				if !ok || sig.Name != s.Name && indexOf(cat, sig.Name) > indexOf(cat, s.Name) {
					t.Fatalf("Match(%q) = %q,%v; %s matches first", line, sig.Name, ok, s.Name)
				}
				return
			}
		}
		if ok {
			t.Fatalf("Match(%q) = %s, but no regex matches", line, sig.Name)
		}
	})
}

func indexOf(c *Catalogue, name string) int {
	for i, s := range c.sigs {
		if s.Name == name {
			return i
		}
	}
	return -1
}
