//go:build cgo && (pacific || quincy || reef || squid || tentacle || umbrella)

package goceph

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"netboot/internal/clock"
	"netboot/rbd"
	"netboot/test/cephlab"
)

// One cluster serves every test of the package (bootstrap ~2-5 s); tests
// use their own images and their own host IPs (127.0.0.x) so that their
// lock and blocklist states never meet. A test that stops Ceph starts its
// own cluster.
var (
	sharedOnce sync.Once
	shared     *cephlab.Cluster
	sharedErr  error
	imageSeq   atomic.Int32
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "cephlab stop:", err)
		}
		os.RemoveAll(shared.Dir())
	}
	os.Exit(code)
}

// lab returns the shared cluster, starting it on first use.
func lab(t testing.TB) *cephlab.Cluster {
	t.Helper()
	testenvTools(t)
	sharedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rbd-goceph-lab-")
		if err != nil {
			sharedErr = err
			return
		}
		c, err := cephlab.New(cephlab.Config{Dir: dir})
		if err != nil {
			sharedErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		if err := c.Bootstrap(ctx); err != nil {
			_ = c.Stop()
			sharedErr = fmt.Errorf("%w\n%s", err, c.LogTail())
			return
		}
		shared = c
	})
	if sharedErr != nil {
		t.Fatalf("shared ceph lab: %v", sharedErr)
	}
	return shared
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
	cl := New(Config{ConfFile: c.ConfPath, User: "admin", Timeout: timeout}, zaptest.NewLogger(t))
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
