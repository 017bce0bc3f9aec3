//go:build cgo && (pacific || quincy || reef || squid || tentacle || umbrella)

package goceph

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"netboot/rbd"
	"netboot/test/cephlab"
)

// TestHandover runs issue 3's acceptance cases against one real cluster.
// Each subtest has its own image and host IPs.
func TestHandover(t *testing.T) {
	e := newEnv(t, callTimeout)
	t.Run("recorded-owner", func(t *testing.T) { testRecordedOwner(t, e) })
	t.Run("rbd-bench-owner", func(t *testing.T) { testRbdBenchOwner(t, e) })
	t.Run("unrecorded-refuse", func(t *testing.T) { testUnrecorded(t, e, false, 12) })
	t.Run("unrecorded-break", func(t *testing.T) { testUnrecorded(t, e, true, 13) })
	t.Run("foreign-owner", func(t *testing.T) { testForeignOwner(t, e) })
	t.Run("not-booting", func(t *testing.T) { testNotBooting(t, e) })
	t.Run("blocklist-ranges", func(t *testing.T) { testBlocklistRanges(t, e) })
	t.Run("concurrent-same-boot", func(t *testing.T) { testConcurrent(t, e, true, 24) })
	t.Run("concurrent-two-boots", func(t *testing.T) { testConcurrent(t, e, false, 25) })
	t.Run("host-key", func(t *testing.T) { testHostKey(t, e) })
}

// handedOver asserts the dead owner is fenced exactly, its lock and
// watch gone, and a new client of the host takes the lock and writes at
// once (well inside the 30 s a stale lock costs).
func handedOver(t *testing.T, e *env, img rbd.Image, res rbd.Result, dead string, octet int) {
	t.Helper()
	if want := []rbd.ActionKind{rbd.ActBlocklistAdd, rbd.ActBreakLock}; !slices.Equal(kinds(res.Plan), want) {
		t.Fatalf("plan %v, want %v (%s)", kinds(res.Plan), want, res.Plan.Summary())
	}
	if len(res.Steps) != 2 || !res.Steps[0].OK || !res.Steps[1].OK {
		t.Fatalf("steps %+v", res.Steps)
	}
	if !strings.Contains(res.Steps[0].Detail, "watch gone") {
		t.Errorf("blocklist step: %q, want the dead owner's watch gone", res.Steps[0].Detail)
	}
	ctx := ctxT(t, 30*time.Second)
	bl, err := e.cl.Blocklist(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, b := range bl {
		found = found || (!b.IsRange() && b.Addr.String() == dead)
	}
	if !found {
		t.Errorf("blocklist %v lacks the dead owner %s", bl, dead)
	}
	if o := e.owner(t, img); o != "" {
		t.Fatalf("lock still held by %s after hand-over", o)
	}
	ws, err := e.cl.Watchers(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		if w.Addr.String() == dead {
			t.Errorf("dead owner's watch still present: %+v", w)
		}
	}
	// 10 s: far below the ~30 s an unaided client waits for a stale lock.
	h, _ := e.holder(t, img, octet, 10*time.Second)
	if o := e.owner(t, img); o != h.Addr {
		t.Fatalf("new client %s does not own the lock (owner %q)", h.Addr, o)
	}
	h.Kill()
}

func testRecordedOwner(t *testing.T, e *env) {
	img := newImage(t, e.lab)
	h, ip := e.holder(t, img, 10, 30*time.Second)
	h.Kill()
	ex, m := executor(t, e.cl, callTimeout)
	res, err := prepareRetry(t, ex, request("h10", ip, img, h.Addr, 1))
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	handedOver(t, e, img, res, h.Addr, 10)
	if got := testutil.ToFloat64(m.LockBreaks); got != 1 {
		t.Errorf("lock breaks metric %v, want 1", got)
	}
}

func testRbdBenchOwner(t *testing.T, e *env) {
	img := newImage(t, e.lab)
	ns, ip := e.net.Host(t, 11)
	b := e.lab.StartRbdBench(t, ns, img.Pool, img.Name)
	var owner string
	for i := 0; i < 200 && owner == ""; i++ {
		owner = e.owner(t, img)
		if owner == "" {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !strings.HasPrefix(owner, ip+":") || b.Exited() {
		t.Fatalf("rbd bench did not take the lock from %s (owner %q)", ip, owner)
	}
	b.Kill()
	ex, _ := executor(t, e.cl, callTimeout)
	res, err := prepareRetry(t, ex, request("h11", ip, img, owner, 1))
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	handedOver(t, e, img, res, owner, 11)
}

func testUnrecorded(t *testing.T, e *env, breakIt bool, octet int) {
	img := newImage(t, e.lab)
	h, ip := e.holder(t, img, octet, 30*time.Second)
	h.Kill()
	req := request("h", ip, img, ip+":0/12345", 1) // the previous boot recorded another client
	req.Policy.BreakUnrecordedSameIP = breakIt
	ex, m := executor(t, e.cl, callTimeout)
	res, err := prepareRetry(t, ex, req)
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	if breakIt {
		handedOver(t, e, img, res, h.Addr, octet)
		return
	}
	if !res.Plan.Refused() || res.Plan.Refusal.Reason != rbd.ReasonUnrecordedOwner || res.Plan.Refusal.Holder.String() != h.Addr {
		t.Fatalf("plan %s, want refused unrecorded-owner naming %s", res.Plan.Summary(), h.Addr)
	}
	if o := e.owner(t, img); o != h.Addr {
		t.Fatalf("lock owner %q after refusal, want untouched %s", o, h.Addr)
	}
	if got := testutil.ToFloat64(m.Refusals.WithLabelValues(string(rbd.ReasonUnrecordedOwner))); got != 1 {
		t.Errorf("refusal metric %v, want 1", got)
	}
}

// liveUntouched asserts h still owns the lock and wrote without error
// after since.
func liveUntouched(t *testing.T, e *env, img rbd.Image, h *cephlab.Holder, since time.Time) {
	t.Helper()
	time.Sleep(1500 * time.Millisecond) // a fenced client sees -108 within ~1 s
	if o := e.owner(t, img); o != h.Addr {
		t.Fatalf("lock owner %q, want untouched %s", o, h.Addr)
	}
	ws, err := h.Writes()
	if err != nil {
		t.Fatal(err)
	}
	ok := 0
	for _, w := range ws {
		if w.End.After(since) {
			if w.Err != "" {
				t.Fatalf("live holder's write failed after the refusal: %s", w.Err)
			}
			ok++
		}
	}
	if ok == 0 {
		t.Fatalf("live holder made no write after the refusal")
	}
}

func testForeignOwner(t *testing.T, e *env) {
	img := newImage(t, e.lab)
	h, _ := e.holder(t, img, 14, 30*time.Second) // another host holds it, alive
	_, ip := e.net.Host(t, 15)
	ex, _ := executor(t, e.cl, callTimeout)
	start := time.Now()
	res, err := prepareRetry(t, ex, request("h15", ip, img, "", 1))
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	if !res.Plan.Refused() || res.Plan.Refusal.Reason != rbd.ReasonForeignOwner {
		t.Fatalf("plan %s, want refused foreign-owner", res.Plan.Summary())
	}
	if !strings.Contains(res.Plan.Refusal.Message, h.Addr) || !strings.Contains(res.Plan.Refusal.Message, h.Client) {
		t.Errorf("refusal %q does not name the holder %s %s", res.Plan.Refusal.Message, h.Client, h.Addr)
	}
	liveUntouched(t, e, img, h, start)
}

func testNotBooting(t *testing.T, e *env) {
	img := newImage(t, e.lab)
	h, ip := e.holder(t, img, 16, 30*time.Second)
	req := request("h16", ip, img, h.Addr, 1) // even the recorded owner
	req.Booting = false
	ex, _ := executor(t, e.cl, callTimeout)
	start := time.Now()
	res, err := prepareRetry(t, ex, req)
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	if !res.Plan.Refused() || res.Plan.Refusal.Reason != rbd.ReasonNotBooting {
		t.Fatalf("plan %s, want refused not-booting", res.Plan.Summary())
	}
	liveUntouched(t, e, img, h, start)
}

func testBlocklistRanges(t *testing.T, e *env) {
	img := newImage(t, e.lab)
	_, ip := e.net.Host(t, 21)
	subnet := strings.TrimSuffix(ip, ".21")
	ctx := ctxT(t, 60*time.Second)
	whole := rbd.MustParseAddr(ip + ":0/0")
	exact := rbd.MustParseAddr(ip + ":0/4242")
	for _, a := range []rbd.Addr{whole, exact} {
		if err := e.cl.BlocklistAdd(ctx, a, 10*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	cmd, _ := BlocklistRangeAddCmd(subnet+".20/30", 10*time.Minute)
	if _, err := e.cl.MonCommand(ctx, cmd); err != nil {
		t.Fatal(err)
	}
	ex, m := executor(t, e.cl, callTimeout)
	res, err := prepareRetry(t, ex, request("h21", ip, img, "", 1))
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	if want := []rbd.ActionKind{rbd.ActBlocklistRemove, rbd.ActBlocklistRemove}; !slices.Equal(kinds(res.Plan), want) {
		t.Fatalf("plan %s, want two removals", res.Plan.Summary())
	}
	bl, err := e.cl.Blocklist(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, b := range bl {
		if b.Covers(rbd.MustParseAddr(ip + ":0/0").IP) {
			t.Errorf("entry %s covering the host is still there", b)
		}
		left = append(left, b.String())
	}
	if !slices.Contains(left, exact.String()) {
		t.Errorf("exact entry %s was removed; blocklist now %v", exact, left)
	}
	if got := testutil.ToFloat64(m.BlocklistChanges.WithLabelValues("remove")); got != 2 {
		t.Errorf("blocklist remove metric %v, want 2", got)
	}
	h, _ := e.holder(t, img, 21, 10*time.Second) // the host's new client gets in
	h.Kill()
}

func testConcurrent(t *testing.T, e *env, sameBoot bool, octet int) {
	img := newImage(t, e.lab)
	h, ip := e.holder(t, img, octet, 30*time.Second)
	h.Kill()
	ex, m := executor(t, e.cl, callTimeout)
	ctx := ctxT(t, 60*time.Second)
	var wg sync.WaitGroup
	results := make([]rbd.Result, 2)
	errs := make([]error, 2)
	for i := range 2 {
		boot := int64(1)
		if !sameBoot {
			boot = int64(i + 1)
		}
		wg.Go(func() { results[i], errs[i] = ex.Prepare(ctx, request("h", ip, img, h.Addr, boot)) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("prepare: %v", err)
	}
	ran, other := results[0], results[1]
	if ran.Reused || (len(ran.Steps) == 0 && !other.Reused) {
		ran, other = other, ran
	}
	if len(ran.Steps) != 2 {
		t.Fatalf("no prepare ran the hand-over: %+v / %+v", results[0].Plan.Summary(), results[1].Plan.Summary())
	}
	switch {
	case sameBoot && !other.Reused:
		t.Errorf("second prepare of the same boot was not reused: %s", other.Plan.Summary())
	case !sameBoot && (len(other.Steps) != 0 || other.Plan.Refused()):
		t.Errorf("second boot's prepare: %s, %d steps; want nothing to do", other.Plan.Summary(), len(other.Steps))
	}
	if got := testutil.ToFloat64(m.LockBreaks); got != 1 {
		t.Errorf("lock broken %v times, want once", got)
	}
	if got := testutil.ToFloat64(m.BlocklistChanges.WithLabelValues("add")); got != 1 {
		t.Errorf("blocklisted %v times, want once", got)
	}
}

func testHostKey(t *testing.T, e *env) {
	img := newImage(t, e.lab)
	other := newImage(t, e.lab)
	ctx := ctxT(t, 60*time.Second)
	id, err := e.cl.ImageID(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	caps, err := rbd.HostCaps(img, id)
	if err != nil {
		t.Fatal(err)
	}
	key, err := e.cl.HostKey(ctx, rbd.HostEntity("h26"), caps)
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.cl.HostKey(ctx, rbd.HostEntity("h26"), caps)
	if err != nil || again != key {
		t.Fatalf("second HostKey = %q, %v; want the same key", again, err)
	}
	conf, err := e.lab.ClientConf(rbd.HostEntity("h26"), key)
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := e.net.Host(t, 26)
	hc := cephlab.HolderConfig{Pool: img.Pool, Image: img.Name, NetNS: ns, Conf: conf, User: "netboot-h26"}
	h, err := e.lab.StartHolder(t, hc, 20*time.Second)
	if err != nil {
		t.Fatalf("host user cannot lock and write its own image: %v", err)
	}
	h.Kill()
	hc.Image = other.Name
	if _, err := e.lab.StartHolder(t, hc, 20*time.Second); err == nil {
		t.Fatalf("host user could open another host's image %s", other)
	} else {
		t.Logf("other image refused as expected: %v", err)
	}
	_ = fmt.Sprint()
}
