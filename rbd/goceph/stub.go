//go:build !cgo || !(pacific || quincy || reef || squid || tentacle || umbrella)

package goceph

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"netboot/rbd"
)

// ErrNoCeph is returned by every call of a binary built without Ceph.
var ErrNoCeph = errors.New("netboot was built without Ceph support: build with -tags pacific (or reef, squid; see rbd/goceph)")

// Available reports whether this binary was built with Ceph support.
const Available = false

// ErrNoCephOrNil returns ErrNoCeph in a build without Ceph support.
func ErrNoCephOrNil() error { return ErrNoCeph }

// Cluster is the stub used when built without Ceph support.
type Cluster struct{}

var _ rbd.Cluster = (*Cluster)(nil)

// New returns a stub whose calls fail with ErrNoCeph.
func New(cfg Config, log *zap.Logger) *Cluster { return &Cluster{} }

// Close does nothing.
func (c *Cluster) Close() error { return nil }

func (c *Cluster) LockOwners(context.Context, rbd.Image) ([]rbd.LockOwner, error) {
	return nil, ErrNoCeph
}
func (c *Cluster) Lockers(context.Context, rbd.Image) (rbd.Lockers, error) {
	return rbd.Lockers{}, ErrNoCeph
}
func (c *Cluster) Watchers(context.Context, rbd.Image) ([]rbd.Watcher, error) { return nil, ErrNoCeph }

// OSDUpIn is unavailable without Ceph support.
func (c *Cluster) OSDUpIn(context.Context, int) (bool, bool, error)            { return false, false, ErrNoCeph }
func (c *Cluster) Blocklist(context.Context) ([]rbd.BlocklistEntry, error)     { return nil, ErrNoCeph }
func (c *Cluster) BlocklistAdd(context.Context, rbd.Addr, time.Duration) error { return ErrNoCeph }
func (c *Cluster) BlocklistRemove(context.Context, rbd.BlocklistEntry) error   { return ErrNoCeph }
func (c *Cluster) BreakLock(context.Context, rbd.Image, rbd.Addr) error        { return ErrNoCeph }
func (c *Cluster) HostKey(context.Context, string, rbd.Caps) (string, error)   { return "", ErrNoCeph }
func (c *Cluster) ImageID(context.Context, rbd.Image) (string, error)          { return "", ErrNoCeph }
