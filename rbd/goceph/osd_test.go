//go:build cgo && (pacific || quincy || reef || squid || tentacle || umbrella)

package goceph

import (
	"testing"
	"time"
)

// TestOSDUpIn asks a real cluster for osd.0 while it runs and after it is
// stopped (the ceph-osd-up smoke check's data source in netbootd).
func TestOSDUpIn(t *testing.T) {
	e := newEnv(t, 10*time.Second)
	up, in, err := e.cl.OSDUpIn(ctxT(t, 30*time.Second), 0)
	if err != nil || !up || !in {
		t.Fatalf("osd.0 running: up=%v in=%v err=%v, want up and in", up, in, err)
	}
	if _, _, err := e.cl.OSDUpIn(ctxT(t, 30*time.Second), 7); err == nil {
		t.Fatal("osd.7 does not exist, want an error")
	}
	if err := e.lab.StopOSD(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		up, _, err = e.cl.OSDUpIn(ctxT(t, 30*time.Second), 0)
		if err != nil {
			t.Fatal(err)
		}
		if !up {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("osd.0 still reported up 90s after it was stopped")
		}
		time.Sleep(time.Second)
	}
}
