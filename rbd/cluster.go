package rbd

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// Image names one RBD image.
type Image struct {
	Pool string `json:"pool"`
	Name string `json:"image"`
}

func (i Image) String() string { return i.Pool + "/" + i.Name }

// LockOwner is the live owner of an image's exclusive lock
// (rbd_lock_get_owners).
type LockOwner struct {
	Addr      Addr `json:"addr"`
	Exclusive bool `json:"exclusive"`
}

// Locker is one entry of the image header's cls_lock (rbd_list_lockers):
// Client is "client.N" (the session's global id), Cookie "auto <watch
// cookie>" for locks taken by librbd/krbd's exclusive-lock feature.
type Locker struct {
	Client string `json:"client"`
	Cookie string `json:"cookie"`
	Addr   Addr   `json:"addr"`
}

// Watcher is one watch on the image header (rbd_watchers_list). A dead
// client's watch lingers until osd_client_watch_timeout (30 s) or until the
// client is blocklisted.
type Watcher struct {
	Addr   Addr   `json:"addr"`
	ID     int64  `json:"id"` // global id: client.<ID>
	Cookie uint64 `json:"cookie"`
}

// BlocklistEntry is one entry of the OSD blocklist. Exactly one of Addr
// (exact or whole-IP entry) and Range (CIDR entry) is set.
type BlocklistEntry struct {
	Addr  Addr         `json:"addr,omitzero"`
	Range netip.Prefix `json:"range,omitzero"`
	Until time.Time    `json:"until,omitzero"`
}

// IsRange reports whether e is a CIDR range entry.
func (e BlocklistEntry) IsRange() bool { return e.Range.IsValid() }

// Covers reports whether e blocks every new client of ip: a whole-IP entry
// for ip or a range containing it. Exact ip:port/nonce entries block only
// that one client instance and never cover a new one.
func (e BlocklistEntry) Covers(ip netip.Addr) bool {
	if e.IsRange() {
		return e.Range.Contains(ip.Unmap())
	}
	return e.Addr.IsWholeIP() && e.Addr.IP == ip.Unmap()
}

func (e BlocklistEntry) String() string {
	if e.IsRange() {
		return "cidr:" + e.Range.String()
	}
	return e.Addr.String()
}

// Lockers is the image header's cls_lock state.
type Lockers struct {
	Tag     string   `json:"tag"` // "internal" for librbd/krbd exclusive-lock
	Lockers []Locker `json:"lockers"`
}

// Cluster is everything the hand-over needs from Ceph. Every method must
// return within ctx's deadline even when the cluster does not answer, and
// map Ceph's errors to the sentinels below (wrapped, with the call named).
// rbd/goceph implements it over librados/librbd.
type Cluster interface {
	// LockOwners returns the live exclusive-lock owners (at most one for an
	// exclusive lock; none when the image is unlocked).
	LockOwners(ctx context.Context, img Image) ([]LockOwner, error)
	// Lockers returns the header's lock tag and lockers.
	Lockers(ctx context.Context, img Image) (Lockers, error)
	// Watchers returns the header's watchers, without the implementation's
	// own connection.
	Watchers(ctx context.Context, img Image) ([]Watcher, error)
	// Blocklist returns every OSD blocklist entry: exact and range.
	Blocklist(ctx context.Context) ([]BlocklistEntry, error)
	// BlocklistAdd blocklists exactly addr for expiry.
	BlocklistAdd(ctx context.Context, addr Addr, expiry time.Duration) error
	// BlocklistRemove removes one entry (exact, whole-IP or range).
	BlocklistRemove(ctx context.Context, e BlocklistEntry) error
	// BreakLock breaks the exclusive lock held by owner (EBUSY when owner
	// does not hold it).
	BreakLock(ctx context.Context, img Image, owner Addr) error
	// HostKey returns the cephx key of entity (e.g. "client.netboot-cm4-03"),
	// creating it with caps if it does not exist and setting caps if they
	// differ.
	HostKey(ctx context.Context, entity string, caps Caps) (string, error)
	// ImageID returns the image's internal id (the rbd_data.<id> prefix).
	ImageID(ctx context.Context, img Image) (string, error)
}

// Caps are cephx capabilities by service ("mon", "osd").
type Caps map[string]string

// Sentinel errors every Cluster implementation maps Ceph's errors to.
var (
	// ErrUnavailable: the cluster did not answer in time or could not be
	// reached (timeouts, connection refused, ETIMEDOUT).
	ErrUnavailable = errors.New("ceph unavailable")
	// ErrNotFound: pool, image or entity does not exist (ENOENT).
	ErrNotFound = errors.New("not found")
	// ErrBusy: the lock is not held by the given owner (EBUSY).
	ErrBusy = errors.New("lock busy or not held by that owner")
	// ErrPermission: the cephx user may not do this (EACCES, EPERM).
	ErrPermission = errors.New("permission denied")
	// ErrBlocklisted: the connection itself was blocklisted (ESHUTDOWN).
	ErrBlocklisted = errors.New("client blocklisted")
)
