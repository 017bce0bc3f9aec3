// Package rbdtest has test doubles for code that uses rbd/: an in-memory
// Cluster whose state tests set and inspect.
package rbdtest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"netboot/rbd"
)

var _ rbd.Cluster = (*Cluster)(nil)

// Cluster is an in-memory rbd.Cluster for unit tests of code that uses
// the hand-over (the API, the CLI). Set Fail/Block per call name:
// owners, lockers, watchers, blocklist, add, rm, break.
type Cluster struct {
	mu        sync.Mutex
	Obs       rbd.Observation
	Fail      map[string]error // call name -> error
	Block     map[string]bool  // call name -> hang until ctx is done
	Breaks    int
	NoEffect  bool // BreakLock "succeeds" without removing the owner
	CallDelay time.Duration
}

// New returns a cluster showing o.
func New(o rbd.Observation) *Cluster {
	return &Cluster{Obs: o, Fail: map[string]error{}, Block: map[string]bool{}}
}

func (f *Cluster) enter(ctx context.Context, name string) error {
	f.mu.Lock()
	err, blk, d := f.Fail[name], f.Block[name], f.CallDelay
	f.mu.Unlock()
	if d > 0 {
		time.Sleep(d)
	}
	if blk {
		<-ctx.Done()
		return fmt.Errorf("%s: %w", name, ctx.Err())
	}
	return err
}

func (f *Cluster) LockOwners(ctx context.Context, _ rbd.Image) ([]rbd.LockOwner, error) {
	if err := f.enter(ctx, "owners"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]rbd.LockOwner(nil), f.Obs.Owners...), nil
}

func (f *Cluster) Lockers(ctx context.Context, _ rbd.Image) (rbd.Lockers, error) {
	if err := f.enter(ctx, "lockers"); err != nil {
		return rbd.Lockers{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Obs.Lockers, nil
}

func (f *Cluster) Watchers(ctx context.Context, _ rbd.Image) ([]rbd.Watcher, error) {
	if err := f.enter(ctx, "watchers"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]rbd.Watcher(nil), f.Obs.Watchers...), nil
}

func (f *Cluster) Blocklist(ctx context.Context) ([]rbd.BlocklistEntry, error) {
	if err := f.enter(ctx, "blocklist"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]rbd.BlocklistEntry(nil), f.Obs.Blocklist...), nil
}

func (f *Cluster) BlocklistAdd(ctx context.Context, a rbd.Addr, _ time.Duration) error {
	if err := f.enter(ctx, "add"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Obs.Blocklist = append(f.Obs.Blocklist, rbd.BlocklistEntry{Addr: a})
	var ws []rbd.Watcher
	for _, w := range f.Obs.Watchers {
		if w.Addr != a {
			ws = append(ws, w) // the OSD evicts a blocklisted client's watch
		}
	}
	f.Obs.Watchers = ws
	return nil
}

func (f *Cluster) BlocklistRemove(ctx context.Context, e rbd.BlocklistEntry) error {
	if err := f.enter(ctx, "rm"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var kept []rbd.BlocklistEntry
	for _, x := range f.Obs.Blocklist {
		if x != e {
			kept = append(kept, x)
		}
	}
	f.Obs.Blocklist = kept
	return nil
}

func (f *Cluster) BreakLock(ctx context.Context, _ rbd.Image, owner rbd.Addr) error {
	if err := f.enter(ctx, "break"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.Obs.Owners) == 0 || f.Obs.Owners[0].Addr != owner {
		return fmt.Errorf("break: %w", rbd.ErrBusy)
	}
	f.Breaks++
	if !f.NoEffect {
		f.Obs.Owners, f.Obs.Lockers = nil, rbd.Lockers{}
	}
	return nil
}

func (f *Cluster) HostKey(context.Context, string, rbd.Caps) (string, error) { return "key", nil }
func (f *Cluster) ImageID(context.Context, rbd.Image) (string, error)        { return "abc", nil }

// Set makes the named call fail with err (nil: succeed again).
func (f *Cluster) Set(name string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Fail[name] = err
}
