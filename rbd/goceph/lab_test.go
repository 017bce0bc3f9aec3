//go:build cgo && (pacific || quincy || reef || squid || tentacle || umbrella)

package goceph

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"netboot/internal/clock"
	"netboot/rbd"
	"netboot/test/cephlab"
)

var imageSeq atomic.Int32

// env is one cluster in a private network: simulated hosts live in their
// own namespaces (own IPs), the code under test reaches Ceph from the
// test's namespace (another IP), as netbootd does in production.
type env struct {
	net *cephlab.Net
	lab *cephlab.Cluster
	cl  *Cluster
}

func newEnv(t *testing.T, timeout time.Duration) *env {
	t.Helper()
	testenvTools(t)
	n := cephlab.NewNet(t)
	lab := cephlab.StartInNet(t, n)
	return &env{net: n, lab: lab, cl: admin(t, lab, timeout)}
}

// newImage creates a fresh root image for one test.
func newImage(t testing.TB, c *cephlab.Cluster) rbd.Image {
	t.Helper()
	img := rbd.Image{Pool: c.Pool(), Name: fmt.Sprintf("root-%d", imageSeq.Add(1))}
	c.CreateImage(t, img.Pool, img.Name, "32M")
	return img
}

// admin returns a goceph Cluster as client.admin of c.
func admin(t testing.TB, c *cephlab.Cluster, timeout time.Duration) *Cluster {
	t.Helper()
	cl := New(Config{ConfFile: c.ConfPath, User: "admin", Timeout: timeout, Options: map[string]string{
		"debug_objecter": "10", "debug_ms": "1", "log_file": c.Dir() + "/log/netboot-admin.log"}}, zaptest.NewLogger(t))
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

func executor(t testing.TB, cl rbd.Cluster, timeout time.Duration) (*rbd.Executor, *rbd.Metrics) {
	m := rbd.NewMetrics(nil)
	return rbd.NewExecutor(cl, rbd.ExecutorConfig{CallTimeout: timeout}, zaptest.NewLogger(t), clock.Real{}, m), m
}

func defaultPolicy() rbd.Policy {
	return rbd.Policy{RemoveRangeBlocklist: true, BlocklistExpiry: time.Hour}
}

// request is a prepare from a booting host at ip.
func request(host, ip string, img rbd.Image, recorded string, boot int64) rbd.Request {
	a := netip.MustParseAddr(ip)
	r := rbd.Request{Host: host, Image: img, HostIP: a, CallerIP: a, Booting: true, BootID: boot, Policy: defaultPolicy()}
	if recorded != "" {
		r.Recorded = rbd.MustParseAddr(recorded)
	}
	return r
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// holder starts a lock holder for img in the host namespace of octet.
func (e *env) holder(t testing.TB, img rbd.Image, octet int, timeout time.Duration) (*cephlab.Holder, string) {
	t.Helper()
	ns, ip := e.net.Host(t, octet)
	h, err := e.lab.StartHolder(t, cephlab.HolderConfig{Pool: img.Pool, Image: img.Name, NetNS: ns}, timeout)
	if err != nil {
		t.Fatalf("holder on %s: %v", ip, err)
	}
	return h, ip
}

// owner is the lock owner as the rbd CLI sees it ("" when unlocked).
func (e *env) owner(t testing.TB, img rbd.Image) string {
	t.Helper()
	o, err := e.lab.LockOwnerCLI(ctxT(t, 30*time.Second), img.Pool, img.Name)
	if err != nil {
		t.Fatalf("rbd lock ls: %v", err)
	}
	return o
}

func kinds(p rbd.Plan) []rbd.ActionKind {
	var k []rbd.ActionKind
	for _, a := range p.Actions {
		k = append(k, a.Kind)
	}
	return k
}

// callTimeout bounds each Ceph call in the tests: generous, because the
// test machine is shared (load 10+ on 2 cores is normal); the bound itself
// is tested with a dead cluster in TestCephDown.
const callTimeout = 20 * time.Second

// prepareRetry calls Prepare like nbinit does: a Ceph error (ErrUnavailable)
// is retried after a pause, up to twice; refusals and successes return.
// Every retry is logged; with the harness's network fixed (the bridge's
// MAC, see cephlab.NewNet) none is expected.
func prepareRetry(t testing.TB, ex *rbd.Executor, req rbd.Request) (rbd.Result, error) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		res, err := ex.Prepare(ctxT(t, 3*callTimeout), req)
		if err == nil || !errors.Is(err, rbd.ErrUnavailable) || attempt == 3 {
			return res, err
		}
		t.Logf("prepare attempt %d: %v; retrying like nbinit", attempt, err)
		time.Sleep(time.Second)
	}
}
