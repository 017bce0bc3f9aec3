package boot

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/event"
	"netboot/internal/store"
	"netboot/internal/store/sqlite"
)

var update = flag.Bool("update", false, "rewrite golden files")

var t0 = time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC)

// testInventory has an x86 UEFI class and a Pi class, neither with smoke
// checks, and one class with a short userspace deadline.
func testInventory() *config.Config {
	return &config.Config{
		Classes: map[string]config.Class{
			"udoo": {Arch: "amd64", Firmware: "uefi", Deadlines: map[string]config.Duration{"root-mount": config.Duration(45 * time.Second)}},
			"cm4":  {Arch: "arm64", Firmware: "rpi"},
		},
		Hosts: []config.Host{
			{Name: "udoo1", MAC: "02:00:00:00:00:01", IP: "10.0.0.11", Class: "udoo", Arch: "amd64"},
			{Name: "pi1", Serial: "a1b2c3d4", IP: "10.0.0.21", Class: "cm4", Arch: "arm64"},
		},
	}
}

func newTestTracker(t *testing.T, inv *config.Config, st store.Store, clk clock.Clock) *Tracker {
	t.Helper()
	tr, err := New(context.Background(), Config{Inventory: inv, Store: st, Clock: clk, SmokeInterval: 50 * time.Millisecond,
		WebhookBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func memStore(t *testing.T) store.Store { return memStoreB(t) }

func memStoreB(t testing.TB) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// step is one input of a state-machine case: advance the clock, then
// record an event, observe a netconsole line, or announce a reboot.
type step struct {
	after  time.Duration
	ev     event.Event
	line   string
	expect time.Duration
}

func ev(kind event.Kind, stage event.Stage, attrs ...string) step {
	e := event.Event{Kind: kind, Stage: stage, Attrs: map[string]string{}}
	for i := 0; i+1 < len(attrs); i += 2 {
		e.Attrs[attrs[i]] = attrs[i+1]
	}
	return step{after: time.Second, ev: e}
}

func failed(kind event.Kind, stage event.Stage, msg string) step {
	s := ev(kind, stage)
	s.ev.Failed, s.ev.Message = true, msg
	return s
}

func line(l string) step { return step{after: 100 * time.Millisecond, line: l} }

func wait(d time.Duration) step { return step{after: d} }

var (
	firmwareDHCP = ev(event.DHCPRequest, event.StageDHCP, "client", "firmware")
	rpiDHCP      = ev(event.DHCPRequest, event.StageDHCP, "client", "rpi")
	ipxeDHCP     = ev(event.DHCPRequest, event.StageDHCP, "client", "ipxe")
	fwFetch      = ev(event.FileFetched, event.StageFirmware, "proto", "tftp", "file", "ipxe.efi", "role", "firmware", "bytes", "1048576")
	kernelFetch  = ev(event.FileFetched, event.StageKernel, "proto", "http", "file", "udoo/vmlinuz", "role", "kernel", "bytes", "9000000")
	initrdFetch  = ev(event.FileFetched, event.StageInitramfs, "proto", "http", "file", "boot/udoo1/initrd", "role", "initramfs", "bytes", "3000000")
	kernelUp     = ev(event.KernelLine, event.StageKernelUp)
	nbInit       = ev(event.StageReport, event.StageInit)
	nbNetwork    = ev(event.StageReport, event.StageNetwork)
	rootPrepared = ev(event.RootPrepared, event.StageRootPrepare, "action", "none", "lock", "free")
	rootMapped   = ev(event.RootMapped, event.StageRootMap, "client_addr", "10.0.0.11:0/123456", "device", "/dev/rbd0")
	rootMount    = ev(event.StageReport, event.StageRootMount)
	switchRoot   = ev(event.StageReport, event.StageSwitchRoot)
	userspace    = ev(event.StageReport, event.StageUserspace)
)

func chain(steps ...step) []step { return steps }

var x86ToRootMap = chain(firmwareDHCP, fwFetch, ipxeDHCP, kernelFetch, initrdFetch, kernelUp, nbInit, nbNetwork, rootPrepared, rootMapped)

func TestStateMachineGolden(t *testing.T) {
	cases := []struct {
		name  string
		host  string
		steps []step
	}{
		{"x86-succeeded", "udoo1", append(append([]step{}, x86ToRootMap...), rootMount, switchRoot, userspace)},
		{"pi-succeeded-skips-ipxe", "pi1", chain(rpiDHCP,
			ev(event.FileFailed, event.StageNone, "proto", "tftp", "file", "a1b2c3d4/start4.elf.probe"),
			ev(event.FileFetched, event.StageFirmware, "proto", "tftp", "file", "a1b2c3d4/start4.elf", "role", "firmware"),
			ev(event.FileFetched, event.StageKernel, "proto", "tftp", "file", "a1b2c3d4/kernel8.img", "role", "kernel"),
			ev(event.FileFetched, event.StageInitramfs, "proto", "tftp", "file", "a1b2c3d4/initrd", "role", "initramfs"),
			nbInit, nbNetwork, rootMapped, ev(event.HostReady, event.StageNone))},
		{"in-progress", "udoo1", chain(firmwareDHCP, fwFetch, ipxeDHCP)},
		{"refused-dhcp-fails-once-for-retries", "pi1", chain(
			failed(event.DHCPIgnored, event.StageDHCP, "arch mismatch: class cm4 is arm64, client is x86-64 UEFI"),
			failed(event.DHCPIgnored, event.StageDHCP, "arch mismatch: class cm4 is arm64, client is x86-64 UEFI"),
			ev(event.DHCPIgnored, event.StageNone, "reason", "unknown MAC"),
			wait(time.Hour),
			failed(event.DHCPIgnored, event.StageDHCP, "arch mismatch: class cm4 is arm64, client is x86-64 UEFI"))},
		{"failed-kernel-fetch-then-retry-opens", "udoo1", chain(firmwareDHCP, fwFetch, ipxeDHCP,
			step{after: time.Second, ev: event.Event{Kind: event.FileFailed, Stage: event.StageKernel, Failed: true,
				Message: "open x86/vmlinuz: no such file or directory", Attrs: map[string]string{"proto": "http", "file": "x86/vmlinuz", "role": "kernel", "status": "404"}}},
			kernelFetch)},
		{"tftp-timeout-then-retry-continues", "pi1", chain(rpiDHCP,
			step{after: time.Second, ev: event.Event{Kind: event.FileFailed, Stage: event.StageFirmware, Failed: true,
				Message: "tftp start4.elf timeout: no ACK after 5 retries", Attrs: map[string]string{"proto": "tftp", "file": "d9780558/start4.elf", "role": "firmware", "transient": "true"}}},
			nbInit)},
		{"netconsole-seq-reset-opens", "pi1", chain(rpiDHCP, kernelUp, nbInit,
			step{after: time.Second, ev: event.Event{Kind: event.KernelLine, Stage: event.StageKernelUp, Attrs: map[string]string{"reason": "seq-reset"}}},
			step{after: time.Second, ev: event.Event{Kind: event.KernelLine, Stage: event.StageKernelUp, Attrs: map[string]string{"reason": "tracker"}}})},
		{"stuck-names-last-rbd-refusal", "udoo1", chain(firmwareDHCP, fwFetch, ipxeDHCP, kernelFetch, initrdFetch, kernelUp, nbInit, nbNetwork,
			step{after: time.Second, ev: event.Event{Kind: event.RootRefused, Stage: event.StageRootPrepare,
				Message: "ceph unavailable: connect to monitors: timed out after 10s", Attrs: map[string]string{"reason": "ceph-error", "retryable": "true"}}},
			wait(2*time.Minute))},
		{"firmware-dhcp-retry-is-one-attempt", "udoo1", chain(firmwareDHCP, firmwareDHCP, firmwareDHCP, fwFetch)},
		{"stages-never-go-backwards", "udoo1", chain(firmwareDHCP, fwFetch, kernelFetch, ipxeDHCP, fwFetch, initrdFetch)},
		{"failed-nbinit-stage", "udoo1", append(append([]step{}, x86ToRootMap...),
			failed(event.StageReport, event.StageRootMount, "mount /dev/rbd0 on /newroot: invalid argument"))},
		{"failed-rbd-refused", "udoo1", chain(firmwareDHCP, fwFetch, ipxeDHCP, kernelFetch, initrdFetch, kernelUp, nbInit, nbNetwork,
			failed(event.RootRefused, event.StageRootPrepare, "lock held by 10.0.0.99:0/42 which is not this host: never broken"))},
		{"rbd-retryable-refusal-does-not-advance", "udoo1", chain(firmwareDHCP, fwFetch, ipxeDHCP, kernelFetch, initrdFetch, kernelUp, nbInit, nbNetwork,
			step{after: time.Second, ev: event.Event{Kind: event.RootRefused, Stage: event.StageRootPrepare,
				Message: "root prepare failed, retry: ceph: timed out", Attrs: map[string]string{"reason": "ceph-error", "retryable": "true"}}},
			rootPrepared)},
		{"retrying-failure-does-not-end", "udoo1", chain(firmwareDHCP, fwFetch, ipxeDHCP, kernelFetch, initrdFetch, kernelUp, nbInit,
			step{after: time.Second, ev: event.Event{Kind: event.StageReport, Stage: event.StageNetwork, Failed: true,
				Message: "dhcp timed out, retrying", Attrs: map[string]string{"retrying": "true"}}}, nbNetwork)},
		{"failed-kernel-panic-signature", "udoo1", chain(firmwareDHCP, fwFetch, ipxeDHCP, kernelFetch, initrdFetch, kernelUp,
			line("[    1.100000] Run /init as init process"),
			line("[    1.200000] nbinit: cannot exec: no such file"),
			line("[    1.300000] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100"),
			line("[    1.300100] CPU: 0 PID: 1 Comm: init Not tainted 6.1.0-27-amd64"),
			line("[    1.300200] Call Trace:"))},
		{"stuck-with-probable-cause", "udoo1", append(append([]step{}, x86ToRootMap...),
			line("[   12.000000] rbd: rbd0: failed to acquire exclusive lock: -108"),
			wait(44*time.Second), wait(2*time.Second))},
		{"stuck-at-dhcp", "pi1", chain(rpiDHCP, wait(61*time.Second))},
		{"restarted-then-new-attempt", "udoo1", append(append([]step{}, x86ToRootMap...), firmwareDHCP, fwFetch)},
		{"kernel-banner-after-kernel-up-opens", "udoo1", chain(firmwareDHCP, fwFetch, ipxeDHCP, kernelFetch, initrdFetch, kernelUp, nbInit,
			ev(event.KernelBanner, event.StageKernelUp), ev(event.KernelLine, event.StageKernelUp))},
		{"skipped-announced-reboot", "pi1", append(append([]step{}, chain(rpiDHCP, nbInit, userspace)...),
			step{after: time.Second, expect: 5 * time.Minute}, wait(5*time.Minute))},
		{"announced-reboot-answered", "pi1", append(append([]step{}, chain(rpiDHCP, nbInit, userspace)...),
			step{after: time.Second, expect: 5 * time.Minute}, wait(time.Minute), rpiDHCP, nbInit)},
		{"first-news-is-nbinit", "udoo1", chain(nbNetwork, rootMapped)},
		{"nbinit-init-after-success-opens", "pi1", chain(rpiDHCP, nbInit, userspace, wait(time.Hour), nbInit,
			failed(event.StageReport, event.StageNetwork, "no DHCP lease after 60s: giving up"))},
		{"late-signature-does-not-change-success", "pi1", chain(rpiDHCP, nbInit, userspace,
			line("[  300.000000] Out of memory: Killed process 812 (ceph-osd) total-vm:1234kB"))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(t0)
			tr := newTestTracker(t, testInventory(), memStore(t), clk)
			ctx := context.Background()
			for _, s := range tc.steps {
				clk.Advance(s.after)
				switch {
				case s.line != "":
					tr.observe(tc.host, 0, clk.Now(), s.line)
				case s.expect != 0:
					if _, err := tr.ExpectReboot(ctx, tc.host, s.expect); err != nil {
						t.Fatal(err)
					}
				case s.ev.Kind != "":
					e := s.ev
					e.Host, e.Time = tc.host, clk.Now()
					if _, err := tr.Record(ctx, e); err != nil {
						t.Fatal(err)
					}
				}
			}
			reports, err := tr.Reports(ctx, tc.host, 0)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", "machine", tc.name+".json"), reports)
		})
	}
}

// golden compares v's indented JSON with file (rewritten under -update).
func golden(t *testing.T, file string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	if *update {
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("read golden file (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; got:\n%s", file, got)
	}
}

// FuzzMachineInvariants feeds arbitrary event sequences to the pure state
// machine: stages never go backwards within an attempt, the stage timeline
// is strictly increasing, and a final outcome never changes.
func FuzzMachineInvariants(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 2, 0, 3, 12, 0, 9, 13, 0})
	f.Add([]byte{0, 1, 0, 8, 5, 1, 0, 1, 0, 5, 5, 0, 6, 0, 1})
	kinds := []event.Kind{event.DHCPRequest, event.FileFetched, event.FileFailed, event.KernelLine, event.KernelBanner,
		event.StageReport, event.Signature, event.RootPrepared, event.RootRefused, event.HostReady, KindStuck, event.SmokeResult}
	clients := []string{"firmware", "ipxe", "rpi", "nbinit"}
	deadlines := deadlinesFor(config.Class{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var cur *Report
		at := t0
		for i := 0; i+2 < len(data); i += 3 {
			at = at.Add(time.Second)
			ev := event.Event{Time: at, Host: "h", Kind: kinds[int(data[i])%len(kinds)], Stage: event.Stage(int(data[i+1]) % 14),
				Failed: data[i+2]&1 == 1, Attrs: map[string]string{"client": clients[int(data[i+2]>>1)%len(clients)]}}
			if opensAttempt(cur, ev) {
				cur = newReport("h", "", at, deadlines, int(data[i+2]>>3)%2)
			}
			if cur == nil {
				continue
			}
			stage, final, outcome := cur.LastStage, cur.Terminal(), cur.Outcome
			cur.apply(ev)
			if cur.LastStage < stage {
				t.Fatalf("stage went back from %s to %s on %+v", stage, cur.LastStage, ev)
			}
			if final && cur.Outcome != outcome {
				t.Fatalf("final outcome %s changed to %s on %+v", outcome, cur.Outcome, ev)
			}
			for j := 1; j < len(cur.Stages); j++ {
				if cur.Stages[j].Stage <= cur.Stages[j-1].Stage {
					t.Fatalf("timeline not increasing: %+v", cur.Stages)
				}
			}
		}
	})
}
