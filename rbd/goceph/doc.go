// Package goceph implements rbd.Cluster over librados/librbd with
// github.com/ceph/go-ceph. It is the only package of netboot that uses cgo
// for Ceph.
//
// # Building
//
// go-ceph must be told which Ceph release its C headers come from. Debian
// 12 ships Pacific (16.2); go-ceph v0.41.0 builds against it with
// `-tags pacific` (the Makefile sets CEPH_TAGS=pacific). For Reef build with
// `-tags reef` (go-ceph v0.41.0 still supports Reef as deprecated), for
// Squid or newer with `-tags squid` (go-ceph's default API; our tag only
// enables this implementation). Without one of the tags pacific, quincy,
// reef, squid, tentacle or umbrella (or without cgo), New returns a Cluster
// whose every call fails with "built without Ceph support", so the rest of
// the tree builds without librados-dev.
//
// # Bounded calls
//
// librados calls block. Every call runs in its own goroutine and returns
// when ctx is done (rbd.ErrUnavailable), and the connection is configured
// with rados_mon_op_timeout, rados_osd_op_timeout and client_mount_timeout
// equal to Config.Timeout, so an abandoned call ends too. The connection
// is made lazily and shared; rbd_blocklist_on_break_lock is off because the
// executor blocklists the dead owner itself, with the configured expiry.
package goceph

import (
	"time"
)

// Config is how to reach the cluster (config section ceph).
type Config struct {
	// Monitors are "ip:port" (or "[v2:…,v1:…]") addresses; they override
	// ConfFile's mon host when set.
	Monitors []string
	// ConfFile is an optional ceph.conf.
	ConfFile string
	// User without "client."; default "admin".
	User string
	// Keyring is User's keyring file.
	Keyring string
	// Timeout bounds every call. Default 10s.
	Timeout time.Duration
	// Options are extra librados config options (e.g. debug_objecter).
	Options map[string]string
}

func (c *Config) setDefaults() {
	if c.User == "" {
		c.User = "admin"
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
}
