package cephlab

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestNetHolder proves a holder in a simulated host's namespace owns the
// lock with that host's IP.
func TestNetHolder(t *testing.T) {
	n := NewNet(t)
	lab := StartInNet(t, n)
	lab.CreateImage(t, lab.Pool(), "nethost", "16M")
	ns, ip := n.Host(t, 2)
	h, err := lab.StartHolder(t, HolderConfig{Image: "nethost", NetNS: ns}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h.Addr, ip+":") {
		t.Fatalf("holder address %s, want on %s", h.Addr, ip)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	owner, err := lab.LockOwnerCLI(ctx, lab.Pool(), "nethost")
	if err != nil || owner != h.Addr {
		t.Fatalf("lock owner %q (%v), want %s", owner, err, h.Addr)
	}
}
