//go:build cgo && (pacific || quincy || reef || squid || tentacle || umbrella)

package goceph

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ceph/go-ceph/rados"
	cephrbd "github.com/ceph/go-ceph/rbd"
	"go.uber.org/zap"

	"netboot/rbd"
)

// Available reports whether this binary was built with Ceph support.
const Available = true

// ErrNoCephOrNil returns nil: this build has Ceph support.
func ErrNoCephOrNil() error { return nil }

// Cluster is rbd.Cluster over one shared librados connection.
type Cluster struct {
	cfg Config
	log *zap.Logger

	mu         sync.Mutex
	conn       *rados.Conn
	self       rbd.Addr
	connecting chan struct{} // closed when the running connect attempt ends
	connErr    error
	closed     bool
	ids        map[rbd.Image]string
	// users counts the calls running on each connection; a dropped
	// connection is shut down when its last call ends.
	users   map[*rados.Conn]int
	dropped map[*rados.Conn]bool
}

var _ rbd.Cluster = (*Cluster)(nil)

// New returns a Cluster; it connects on first use.
func New(cfg Config, log *zap.Logger) *Cluster {
	cfg.setDefaults()
	return &Cluster{cfg: cfg, log: log, ids: map[rbd.Image]string{},
		users: map[*rados.Conn]int{}, dropped: map[*rados.Conn]bool{}}
}

// Close shuts the connection down.
func (c *Cluster) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.conn != nil {
		if c.users[c.conn] == 0 {
			c.conn.Shutdown()
		} else {
			c.dropped[c.conn] = true // the last running call shuts it down
		}
		c.conn = nil
	}
	return nil
}

// connection returns the shared connection, connecting (once, for all
// waiters) when there is none. It returns when ctx is done even if the
// connect attempt goes on (bounded by client_mount_timeout).
func (c *Cluster) connection(ctx context.Context) (*rados.Conn, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, fmt.Errorf("connect: %w: cluster handle closed", rbd.ErrUnavailable)
	}
	if c.conn != nil {
		conn := c.conn
		c.users[conn]++
		c.mu.Unlock()
		return conn, nil
	}
	if c.connecting == nil {
		c.connecting = make(chan struct{})
		go c.connect(c.connecting)
	}
	wait := c.connecting
	c.mu.Unlock()
	select {
	case <-wait:
	case <-ctx.Done():
		return nil, fmt.Errorf("connect to ceph (%s): %w: %w", c.where(), rbd.ErrUnavailable, ctx.Err())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil, c.connErr
	}
	c.users[c.conn]++
	return c.conn, nil
}

// release ends one call on conn; the last call on a dropped connection
// shuts it down.
func (c *Cluster) release(conn *rados.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.users[conn]--
	if c.users[conn] == 0 {
		delete(c.users, conn)
		if c.dropped[conn] {
			delete(c.dropped, conn)
			conn.Shutdown()
		}
	}
}

func (c *Cluster) connect(done chan struct{}) {
	conn, self, err := c.dial()
	c.mu.Lock()
	defer c.mu.Unlock()
	defer close(done)
	c.connecting = nil
	if err != nil || c.closed {
		if conn != nil {
			conn.Shutdown()
		}
		c.connErr = err
		c.log.Warn("ceph connect failed", zap.Strings("monitors", c.cfg.Monitors), zap.Error(err))
		return
	}
	c.conn, c.self, c.connErr = conn, self, nil
	c.log.Info("ceph connected", zap.Strings("monitors", c.cfg.Monitors), zap.Stringer("self", self))
}

// where names the cluster in errors: its monitors or its conf file.
func (c *Cluster) where() string {
	if len(c.cfg.Monitors) > 0 {
		return "monitors " + strings.Join(c.cfg.Monitors, ",")
	}
	return "conf " + c.cfg.ConfFile
}

// dial makes a new connection (rados_create2, rados_conf_*, rados_connect).
func (c *Cluster) dial() (*rados.Conn, rbd.Addr, error) {
	conn, err := rados.NewConnWithUser(c.cfg.User)
	if err != nil {
		return nil, rbd.Addr{}, fmt.Errorf("connect: new conn: %w", mapErr(err))
	}
	if err := c.configure(conn); err != nil {
		conn.Shutdown()
		return nil, rbd.Addr{}, err
	}
	if err := conn.Connect(); err != nil {
		conn.Shutdown()
		return nil, rbd.Addr{}, fmt.Errorf("connect to ceph (%s): %w", c.where(), mapConnectErr(err))
	}
	addrs, err := conn.GetAddrs() // rados_getaddrs
	if err != nil {
		conn.Shutdown()
		return nil, rbd.Addr{}, fmt.Errorf("connect: own address: %w", mapErr(err))
	}
	self, _ := rbd.ParseAddr(addrs)
	return conn, self, nil
}

func (c *Cluster) configure(conn *rados.Conn) error {
	if c.cfg.ConfFile != "" {
		if err := conn.ReadConfigFile(c.cfg.ConfFile); err != nil {
			return fmt.Errorf("connect: read %s: %w", c.cfg.ConfFile, mapErr(err))
		}
	}
	secs := strconv.Itoa(int((c.cfg.Timeout + time.Second - 1) / time.Second))
	opts := [][2]string{
		{"rados_mon_op_timeout", secs}, {"rados_osd_op_timeout", secs}, {"client_mount_timeout", secs},
		{"rbd_blocklist_on_break_lock", "false"}, {"admin_socket", ""}, {"log_to_stderr", "false"},
	}
	if len(c.cfg.Monitors) > 0 {
		opts = append(opts, [2]string{"mon_host", strings.Join(c.cfg.Monitors, ",")})
	}
	if c.cfg.Keyring != "" {
		opts = append(opts, [2]string{"keyring", c.cfg.Keyring})
	}
	for k, v := range c.cfg.Options {
		opts = append(opts, [2]string{k, v})
	}
	for _, o := range opts {
		if err := conn.SetConfigOption(o[0], o[1]); err != nil {
			return fmt.Errorf("connect: set %s: %w", o[0], mapErr(err))
		}
	}
	return nil
}

// do runs f on the connection in its own goroutine and returns when it
// finishes or ctx is done (ErrUnavailable); an abandoned f ends by itself
// within the rados op timeouts.
func (c *Cluster) do(ctx context.Context, what string, f func(*rados.Conn) error) error {
	conn, err := c.connection(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	done := make(chan error, 1)
	go func() {
		defer c.release(conn)
		done <- f(conn)
	}()
	select {
	case err := <-done:
		if err != nil {
			if errors.Is(err, rbd.ErrBlocklisted) || isErrno(err, syscall.ETIMEDOUT) {
				c.reset(conn)
			}
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	case <-ctx.Done():
		// A connection whose op went unanswered may be the problem (a
		// stale path, a half-dead session): the next call starts afresh.
		c.reset(conn)
		return fmt.Errorf("%s: %w: no answer: %w", what, rbd.ErrUnavailable, ctx.Err())
	}
}

// reset drops a connection that can no longer work (blocklisted, or an op
// went unanswered); calls still running on it keep their reference until
// they end (bounded by the rados op timeouts), then it is shut down.
func (c *Cluster) reset(conn *rados.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == conn {
		c.conn = nil
		c.dropped[conn] = true
		c.log.Warn("ceph connection dropped; the next call reconnects")
	}
}

// withImage opens pool/image (rados_ioctx_create, rbd_open_read_only or
// rbd_open) and runs f on it.
func (c *Cluster) withImage(ctx context.Context, what string, img rbd.Image, readOnly bool, f func(*cephrbd.Image) error) error {
	return c.do(ctx, what+" "+img.String(), func(conn *rados.Conn) error {
		ioctx, err := conn.OpenIOContext(img.Pool)
		if err != nil {
			return fmt.Errorf("open pool: %w", mapErr(err))
		}
		defer ioctx.Destroy()
		open := cephrbd.OpenImage
		if readOnly {
			open = cephrbd.OpenImageReadOnly
		}
		im, err := open(ioctx, img.Name, cephrbd.NoSnapshot)
		if err != nil {
			return fmt.Errorf("open image: %w", mapErr(err))
		}
		defer im.Close()
		return f(im)
	})
}

// rbdLockName is the cls_lock name librbd and krbd use on the image
// header for the exclusive-lock feature.
const rbdLockName = "rbd_lock"

// headerLockers reads the header's cls_lock with rados_list_lockers on
// rbd_header.<id>. This is what rbd_lock_get_owners and rbd_list_lockers
// read, without opening the image read-write (which registers a watch and
// was seen to block for the stale watcher's 30 s) and without librbd's
// per-handle cache.
func (c *Cluster) headerLockers(ctx context.Context, img rbd.Image) (*rados.LockInfo, string, error) {
	id, err := c.ImageID(ctx, img)
	if err != nil {
		return nil, "", err
	}
	oid := "rbd_header." + id
	var info *rados.LockInfo
	err = c.do(ctx, "list lockers of "+img.String(), func(conn *rados.Conn) error {
		ioctx, err := conn.OpenIOContext(img.Pool)
		if err != nil {
			return fmt.Errorf("open pool: %w", mapErr(err))
		}
		defer ioctx.Destroy()
		info, err = ioctx.ListLockers(oid, rbdLockName)
		return mapErr(err)
	})
	if errors.Is(err, rbd.ErrNotFound) {
		c.mu.Lock()
		delete(c.ids, img) // re-created image: new id next time
		c.mu.Unlock()
	}
	return info, oid, err
}

// LockOwners returns the exclusive-lock owners from the header's lockers
// (rados_list_lockers; the same data rbd_lock_get_owners returns).
func (c *Cluster) LockOwners(ctx context.Context, img rbd.Image) ([]rbd.LockOwner, error) {
	info, _, err := c.headerLockers(ctx, img)
	if err != nil || info == nil {
		return nil, err
	}
	var owners []rbd.LockOwner
	for _, s := range info.Addrs {
		a, err := rbd.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("lock owners of %s: %w", img, err)
		}
		owners = append(owners, rbd.LockOwner{Addr: a, Exclusive: info.Exclusive})
	}
	return owners, nil
}

// Lockers returns the header's lock tag and lockers (rados_list_lockers).
func (c *Cluster) Lockers(ctx context.Context, img rbd.Image) (rbd.Lockers, error) {
	var l rbd.Lockers
	info, _, err := c.headerLockers(ctx, img)
	if err != nil || info == nil {
		return l, err
	}
	l.Tag = strings.TrimRight(info.Tag, "\x00")
	for i := range info.Addrs {
		a, err := rbd.ParseAddr(info.Addrs[i])
		if err != nil {
			return l, fmt.Errorf("lockers of %s: %w", img, err)
		}
		lk := rbd.Locker{Addr: a}
		if i < len(info.Clients) {
			lk.Client = info.Clients[i]
		}
		if i < len(info.Cookies) {
			lk.Cookie = info.Cookies[i]
		}
		l.Lockers = append(l.Lockers, lk)
	}
	return l, nil
}

// Watchers calls rbd_watchers_list and leaves out this connection's own.
func (c *Cluster) Watchers(ctx context.Context, img rbd.Image) ([]rbd.Watcher, error) {
	var ws []rbd.Watcher
	err := c.withImage(ctx, "list watchers", img, true, func(im *cephrbd.Image) error {
		list, err := im.ListWatchers()
		if err != nil {
			return mapErr(err)
		}
		c.mu.Lock()
		self := c.self
		c.mu.Unlock()
		for _, w := range list {
			a, err := rbd.ParseAddr(w.Addr)
			if err != nil {
				return err
			}
			if a == self {
				continue
			}
			ws = append(ws, rbd.Watcher{Addr: a, ID: w.Id, Cookie: w.Cookie})
		}
		return nil
	})
	return ws, err
}

// monCommand calls rados_mon_command.
func (c *Cluster) monCommand(ctx context.Context, what string, cmd []byte) ([]byte, error) {
	var out []byte
	err := c.do(ctx, what, func(conn *rados.Conn) error {
		o, status, err := conn.MonCommand(cmd)
		if err != nil {
			return fmt.Errorf("%w (%s)", mapErr(err), strings.TrimSpace(status))
		}
		out = o
		return nil
	})
	return out, err
}

// Blocklist runs the mon command `osd blocklist ls`.
func (c *Cluster) Blocklist(ctx context.Context) ([]rbd.BlocklistEntry, error) {
	out, err := c.monCommand(ctx, "osd blocklist ls", blocklistLsCmd())
	if err != nil {
		return nil, err
	}
	return parseBlocklist(out)
}

// BlocklistAdd runs `osd blocklist add ADDR EXPIRY`.
func (c *Cluster) BlocklistAdd(ctx context.Context, a rbd.Addr, expiry time.Duration) error {
	cmd, err := blocklistAddCmd(a, expiry)
	if err != nil {
		return fmt.Errorf("osd blocklist add: %w", err)
	}
	_, err = c.monCommand(ctx, "osd blocklist add "+a.String(), cmd)
	return err
}

// BlocklistRemove runs `osd blocklist rm ADDR` or `osd blocklist range rm CIDR`.
func (c *Cluster) BlocklistRemove(ctx context.Context, e rbd.BlocklistEntry) error {
	cmd, err := blocklistRmCmd(e)
	if err != nil {
		return fmt.Errorf("osd blocklist rm: %w", err)
	}
	_, err = c.monCommand(ctx, "osd blocklist rm "+e.String(), cmd)
	return err
}

// MonCommand runs any mon command (JSON) as this connection's user.
func (c *Cluster) MonCommand(ctx context.Context, cmd []byte) ([]byte, error) {
	return c.monCommand(ctx, "mon command", cmd)
}

// BreakLock breaks owner's exclusive lock with rados_break_lock on
// rbd_header.<id> (lock "rbd_lock", the owner's client and cookie), as
// rbd_lock_break and krbd do; it does not blocklist (the executor does,
// first). ErrBusy when owner does not hold the lock.
func (c *Cluster) BreakLock(ctx context.Context, img rbd.Image, owner rbd.Addr) error {
	info, oid, err := c.headerLockers(ctx, img)
	if err != nil {
		return err
	}
	client, cookie := "", ""
	for i := range info.Addrs {
		if a, err := rbd.ParseAddr(info.Addrs[i]); err == nil && a == owner && i < len(info.Clients) && i < len(info.Cookies) {
			client, cookie = info.Clients[i], info.Cookies[i]
		}
	}
	if client == "" {
		return fmt.Errorf("break lock of %s on %s: %w", owner, img, rbd.ErrBusy)
	}
	return c.do(ctx, "break lock of "+owner.String()+" on "+img.String(), func(conn *rados.Conn) error {
		ioctx, err := conn.OpenIOContext(img.Pool)
		if err != nil {
			return fmt.Errorf("open pool: %w", mapErr(err))
		}
		defer ioctx.Destroy()
		ret, err := ioctx.BreakLock(oid, rbdLockName, client, cookie)
		if err != nil {
			return mapErr(err)
		}
		if ret == -int(syscall.ENOENT) {
			return rbd.ErrBusy
		}
		if ret < 0 {
			return fmt.Errorf("rados_break_lock: %w", syscall.Errno(-ret))
		}
		return nil
	})
}

// ImageID reads the image's id from its rbd_id.<name> object (a Ceph
// string: 4-byte little-endian length, then the id) with rados_read, as
// rbd_get_id does, without opening the image. Ids are cached per image
// (they change only when an image is re-created: ENOENT on the header
// drops the cached one).
func (c *Cluster) ImageID(ctx context.Context, img rbd.Image) (string, error) {
	c.mu.Lock()
	id, ok := c.ids[img]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	err := c.do(ctx, "image id of "+img.String(), func(conn *rados.Conn) error {
		ioctx, err := conn.OpenIOContext(img.Pool)
		if err != nil {
			return fmt.Errorf("open pool: %w", mapErr(err))
		}
		defer ioctx.Destroy()
		buf := make([]byte, 256)
		n, err := ioctx.Read("rbd_id."+img.Name, buf, 0)
		if err != nil {
			return fmt.Errorf("read rbd_id.%s: %w", img.Name, mapErr(err))
		}
		id, err = decodeCephString(buf[:n])
		return err
	})
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	c.ids[img] = id
	c.mu.Unlock()
	return id, nil
}

// HostKey runs `auth get-or-create ENTITY CAPS…`; when the entity exists
// with other caps (EINVAL) it runs `auth caps` and `auth get-key`.
func (c *Cluster) HostKey(ctx context.Context, entity string, caps rbd.Caps) (string, error) {
	cmd, err := authGetOrCreateCmd(entity, caps)
	if err != nil {
		return "", fmt.Errorf("auth get-or-create: %w", err)
	}
	out, err := c.monCommand(ctx, "auth get-or-create "+entity, cmd)
	if err == nil {
		return parseKey(out)
	}
	if !isErrno(err, syscall.EINVAL) {
		return "", err
	}
	if cmd, err = authCapsCmd(entity, caps); err != nil {
		return "", fmt.Errorf("auth caps: %w", err)
	}
	if _, err := c.monCommand(ctx, "auth caps "+entity, cmd); err != nil {
		return "", err
	}
	if cmd, err = authGetKeyCmd(entity); err != nil {
		return "", fmt.Errorf("auth get-key: %w", err)
	}
	out, err = c.monCommand(ctx, "auth get-key "+entity, cmd)
	if err != nil {
		return "", err
	}
	return parseKey(out)
}
