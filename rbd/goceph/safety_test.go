//go:build cgo && (pacific || quincy || reef || squid || tentacle || umbrella)

package goceph

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"netboot/rbd"
	"netboot/test/cephlab"
)

// simHost is one simulated diskless host of the safety test.
type simHost struct {
	octet    int
	ip       string
	ns       string
	img      rbd.Image
	policy   rbd.Policy
	cur      *cephlab.Holder // its running (or hung) root client
	hung     bool
	recorded string // what its last "mapped" report stored
	boot     int64
}

type holderRec struct {
	h     *cephlab.Holder
	owner int // host octet whose image it writes
	from  int // host octet it runs on
}

// TestRandomizedSafety drives simulated hosts on distinct IPs through
// random crashes, hangs, reboots (with lost "mapped" reports), spurious
// prepares and foreign clients grabbing another host's image, against one
// cluster, and asserts the two safety properties: two writers never hold
// an image's lock at once (no write of one client between two writes of
// another), and no lock is ever broken on another host's behalf (every
// break is of an owner on the requesting host's own IP, and no foreign
// client ever sees a write fail).
func TestRandomizedSafety(t *testing.T) {
	rounds := 40
	if n, err := strconv.Atoi(os.Getenv("NETBOOT_SAFETY_ROUNDS")); err == nil {
		rounds = n
	}
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("NETBOOT_SAFETY_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("seed %d (NETBOOT_SAFETY_SEED to replay), %d rounds", seed, rounds)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	e := newEnv(t, callTimeout)
	ex, _ := executor(t, e.cl, callTimeout)

	hosts := make([]*simHost, 4)
	for i := range hosts {
		h := &simHost{octet: 30 + i, img: newImage(t, e.lab), policy: defaultPolicy()}
		h.ns, h.ip = e.net.Host(t, h.octet)
		h.policy.BreakUnrecordedSameIP = i%2 == 1
		hosts[i] = h
	}
	var all []holderRec
	var results []rbd.Result
	var resultHost []*simHost
	start := func(h *simHost, on *simHost) *cephlab.Holder {
		hd, err := e.lab.StartHolder(t, cephlab.HolderConfig{Pool: h.img.Pool, Image: h.img.Name, NetNS: on.ns}, 15*time.Second)
		if err != nil {
			return nil
		}
		all = append(all, holderRec{h: hd, owner: h.octet, from: on.octet})
		return hd
	}
	for round := 0; round < rounds; round++ {
		h := hosts[rng.IntN(len(hosts))]
		switch op := rng.IntN(10); {
		case op < 2: // crash: the client dies, its lock and watch go stale
			if h.cur != nil {
				h.cur.Kill()
				h.cur, h.hung = nil, false
				t.Logf("round %d: %s crashed", round, h.ip)
			}
		case op < 3: // hang: alive, holding the lock, not answering
			if h.cur != nil && !h.hung {
				h.cur.Hang()
				h.hung = true
				t.Logf("round %d: %s hung", round, h.ip)
			}
		case op < 8: // reboot: the host boots and asks for its root
			old, oldHung := h.cur, h.hung
			if old != nil && (!oldHung || rng.IntN(2) == 0) {
				old.Kill() // a real reset
				old = nil
			}
			h.cur, h.hung = nil, false
			h.boot++
			req := request(fmt.Sprintf("h%d", h.octet), h.ip, h.img, h.recorded, h.boot)
			req.Policy = h.policy
			res, err := prepareRetry(t, ex, req)
			results, resultHost = append(results, res), append(resultHost, h)
			t.Logf("round %d: %s reboots: %s err=%v", round, h.ip, res.Plan.Summary(), err)
			if err == nil && res.OK() {
				if h.cur = start(h, h); h.cur != nil && rng.IntN(7) != 0 {
					h.recorded = h.cur.Addr // the "mapped" report (sometimes lost)
				}
			}
			if old != nil {
				old.Resume() // the old client was alive all along: must be fenced
				all = append(all, holderRec{h: old, owner: h.octet, from: h.octet})
			}
		case op < 9: // a prepare that must change nothing
			req := request(fmt.Sprintf("h%d", h.octet), h.ip, h.img, h.recorded, h.boot)
			if rng.IntN(2) == 0 {
				req.Booting = false
			} else {
				req.CallerIP = netip.MustParseAddr(hosts[(h.octet-29)%len(hosts)].ip)
			}
			res, err := prepareRetry(t, ex, req)
			if err != nil || !res.Plan.Refused() || len(res.Steps) != 0 {
				t.Errorf("round %d: spurious prepare for %s was not refused: %s %v", round, h.ip, res.Plan.Summary(), err)
			}
		default: // a foreign client grabs h's image while it is free
			other := hosts[rng.IntN(len(hosts))]
			if other == h || h.cur != nil {
				continue
			}
			if owner := e.owner(t, h.img); owner == "" {
				if hd := start(h, other); hd != nil {
					t.Logf("round %d: %s grabbed %s's image (%s)", round, other.ip, h.ip, hd.Addr)
					if rng.IntN(2) == 0 {
						hd.Kill() // and died: a stale foreign lock
					}
				}
			}
		}
	}
	time.Sleep(1500 * time.Millisecond) // let resumed, fenced clients try to write
	for _, r := range all {
		r.h.Kill()
	}
	checkBreaks(t, hosts, results, resultHost)
	checkSingleWriter(t, hosts, all)
}

// checkBreaks: every fence and break is of an owner on the requesting
// host's own IP.
func checkBreaks(t *testing.T, hosts []*simHost, results []rbd.Result, by []*simHost) {
	t.Helper()
	breaks := 0
	for i, res := range results {
		for _, st := range res.Steps {
			if st.Action.Kind == rbd.ActBreakLock || st.Action.Kind == rbd.ActBlocklistAdd {
				breaks++
				if st.Action.Addr.IP.String() != by[i].ip {
					t.Errorf("%s of %s on behalf of host %s", st.Action.Kind, st.Action.Addr, by[i].ip)
				}
			}
		}
	}
	t.Logf("%d prepares, %d fence/break steps, all on the requesting host's own IP", len(results), breaks)
}

// checkSingleWriter: per image, successful writes ordered by completion
// never interleave two clients; a foreign client never sees a failure.
func checkSingleWriter(t *testing.T, hosts []*simHost, all []holderRec) {
	t.Helper()
	per := map[int][]clientWrite{}
	fenced := map[string]bool{}
	for _, r := range all {
		ws, err := r.h.Writes()
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range ws {
			if x.Err != "" {
				if r.from != r.owner && !strings.Contains(x.Err, "-108") {
					t.Errorf("foreign client %s on %d's image saw %s", r.h.Addr, r.owner, x.Err)
				} else if r.from != r.owner {
					t.Errorf("foreign client %s on %d's image was fenced: %s", r.h.Addr, r.owner, x.Err)
				} else {
					fenced[r.h.Addr] = true
				}
				continue
			}
			per[r.owner] = append(per[r.owner], clientWrite{end: x.End, addr: r.h.Addr})
		}
	}
	t.Logf("%d clients alive after their hand-over tried to write and were refused (fenced)", len(fenced))
	for owner, ws := range per {
		for _, v := range interleavings(ws) {
			t.Errorf("image of host %d: %s", owner, v)
		}
		t.Logf("image of host %d: %d successful writes", owner, len(ws))
	}
}
