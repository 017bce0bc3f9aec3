//go:build cgo && (pacific || quincy || reef || squid || tentacle || umbrella)

package goceph

import (
	"testing"
	"time"

	"netboot/rbd"
	"netboot/test/cephlab"
)

// BenchmarkStaleLockHandover measures, in one run against one cluster,
// the reboot of a host whose previous client was SIGKILLed while holding
// its root image's exclusive lock:
//
//   - controlled: root/prepare's hand-over (observe, fence exactly, break,
//     verify), then a new client takes the lock and writes;
//   - unaided: a fresh librbd client takes the lock by itself (it waits for
//     the dead client's watch to expire, ~30 s, then breaks the lock).
//
// It reports both and their ratio (target: prepare ≤ 1 s vs ~30 s).
func BenchmarkStaleLockHandover(b *testing.B) {
	testenvTools(b)
	lab := cephlab.Start(b, cephlab.Config{})
	cl := admin(b, lab, callTimeout)
	ex, _ := executor(b, cl, callTimeout)
	var prepare, controlled, unaided time.Duration
	for i := 0; i < b.N; i++ {
		img := newImage(b, lab)
		dead := staleHolder(b, lab, img)
		t0 := time.Now()
		res, err := ex.Prepare(ctxT(b, time.Minute), request("bench", "127.0.0.1", img, dead.Addr, int64(i+1)))
		prepare += time.Since(t0)
		if err != nil || !res.OK() || len(res.Steps) != 2 {
			b.Fatalf("prepare: %s %v", res.Plan.Summary(), err)
		}
		if _, err := lab.StartHolder(b, cephlab.HolderConfig{Pool: img.Pool, Image: img.Name}, time.Minute); err != nil {
			b.Fatal(err)
		}
		controlled += time.Since(t0)

		img2 := newImage(b, lab)
		staleHolder(b, lab, img2)
		t1 := time.Now()
		if _, err := lab.StartHolder(b, cephlab.HolderConfig{Pool: img2.Pool, Image: img2.Name}, 2*time.Minute); err != nil {
			b.Fatal(err)
		}
		unaided += time.Since(t1)
	}
	n := float64(b.N)
	p, c, u := prepare.Seconds()/n, controlled.Seconds()/n, unaided.Seconds()/n
	b.ReportMetric(p, "prepare-s")
	b.ReportMetric(c, "controlled-s")
	b.ReportMetric(u, "unaided-s")
	b.ReportMetric(u/c, "speedup")
	b.Logf("stale-lock reboot (n=%d): prepare %.3fs, prepare+new client writing %.3fs | unaided librbd client %.1fs | %.0fx faster", b.N, p, c, u, u/c)
}

// staleHolder makes a stale lock on img: a client takes it, writes, and
// is SIGKILLed.
func staleHolder(b *testing.B, lab *cephlab.Cluster, img rbd.Image) *cephlab.Holder {
	b.Helper()
	h, err := lab.StartHolder(b, cephlab.HolderConfig{Pool: img.Pool, Image: img.Name}, time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // a few writes and a watch ping
	h.Kill()
	return h
}
