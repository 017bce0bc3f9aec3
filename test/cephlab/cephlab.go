// Package cephlab starts a throwaway single-node Ceph cluster (Pacific
// 16.2 from Debian 12) for integration tests: one monitor and one memstore
// OSD, cephx on, no mgr, bound to one IP (127.0.0.1 by default, or a bridge
// IP inside a network namespace for end-to-end tests). Bootstrap takes
// about 5 s on 2 cores.
//
// Daemons run in the foreground as children of the test process
// (Pdeathsig kills them if it dies); Stop signals exactly those PIDs.
// Ports are chosen per cluster, so several clusters can run at once.
//
// Typical use:
//
//	lab := cephlab.Start(t, cephlab.Config{})   // stopped in t.Cleanup
//	lab.CreateImage(t, "rbd", "cm4-03-root", "64M")
//	conf := lab.ConfPath                         // admin ceph.conf + keyring
package cephlab

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"netboot/internal/testenv"
)

// Tools are the programs a cluster needs (Debian: ceph-mon ceph-osd
// ceph-common).
var Tools = []string{"ceph", "ceph-mon", "ceph-osd", "ceph-authtool", "monmaptool", "rbd", "uuidgen"}

// Config describes the cluster. Zero values mean the documented defaults.
type Config struct {
	// Dir holds everything; default t.TempDir().
	Dir string
	// IP the daemons bind to; default 127.0.0.1.
	IP string
	// NetNS runs the daemons (and the CLI) inside this network namespace
	// (`ip netns exec`); default: none.
	NetNS string
	// MemstoreBytes caps the OSD's RAM store; default 512 MiB.
	MemstoreBytes int64
	// Pool is created and rbd-initialised at start; default "rbd".
	Pool string
}

// Cluster is a running throwaway cluster.
type Cluster struct {
	cfg Config
	// ConfPath is a ceph.conf for clients, pointing at the admin keyring.
	ConfPath string
	// AdminKeyring is the client.admin keyring file.
	AdminKeyring string
	// MonV1, MonV2 are the monitor's addresses (ip:port); MonHost is the
	// "mon host" value.
	MonV1, MonV2 string

	v2Port, v1Port, osdMin int

	mu    sync.Mutex
	procs map[string]*exec.Cmd
	waits map[string]chan struct{}
}

// Start bootstraps a cluster and registers its Stop in t.Cleanup. It needs
// root only when NetNS is set. Missing tools fail or skip via testenv.
func Start(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	testenv.RequireTools(t, Tools...)
	if cfg.NetNS != "" {
		testenv.RequireRoot(t)
	}
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
		if os.Getenv("NETBOOT_KEEP_LAB") == "1" { // keep logs for a post-mortem
			dir, err := os.MkdirTemp("", "cephlab-")
			if err != nil {
				t.Fatal(err)
			}
			cfg.Dir = dir
			t.Logf("cephlab: keeping %s (NETBOOT_KEEP_LAB=1)", dir)
		}
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("cephlab: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("cephlab stop: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	t0 := time.Now()
	if err := c.Bootstrap(ctx); err != nil {
		t.Fatalf("cephlab bootstrap: %v\n%s", err, c.LogTail())
	}
	t.Logf("cephlab: cluster up in %.1fs (mon %s, conf %s)", time.Since(t0).Seconds(), c.MonV1, c.ConfPath)
	t.Cleanup(func() { // runs before Stop: explain a failure from the daemons' side
		if t.Failed() {
			t.Logf("cephlab diagnostics:\n%s", c.Diagnostics())
		}
	})
	return c
}

// New prepares a cluster in cfg.Dir without starting anything.
func New(cfg Config) (*Cluster, error) {
	if cfg.IP == "" {
		cfg.IP = "127.0.0.1"
	}
	if cfg.MemstoreBytes == 0 {
		cfg.MemstoreBytes = 512 << 20
	}
	if cfg.Pool == "" {
		cfg.Pool = "rbd"
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("new cluster: %w", err)
	}
	cfg.Dir = dir
	c := &Cluster{cfg: cfg, ConfPath: filepath.Join(dir, "ceph.conf"), AdminKeyring: filepath.Join(dir, "ceph.client.admin.keyring"),
		procs: map[string]*exec.Cmd{}, waits: map[string]chan struct{}{}}
	if cfg.NetNS == "" {
		if c.v2Port, err = freePort(cfg.IP); err == nil {
			c.v1Port, err = freePort(cfg.IP)
		}
		if err != nil {
			return nil, fmt.Errorf("new cluster: pick ports: %w", err)
		}
	} else {
		c.v2Port, c.v1Port = 3300, 6789 // the namespace is ours alone
	}
	c.osdMin = 20000 + rand.IntN(200)*100
	c.MonV2 = net.JoinHostPort(cfg.IP, strconv.Itoa(c.v2Port))
	c.MonV1 = net.JoinHostPort(cfg.IP, strconv.Itoa(c.v1Port))
	return c, nil
}

func freePort(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Dir is the cluster's directory.
func (c *Cluster) Dir() string { return c.cfg.Dir }

// IP is the address the daemons are bound to.
func (c *Cluster) IP() string { return c.cfg.IP }

// MonHost is the value of "mon host" for clients.
func (c *Cluster) MonHost() string { return fmt.Sprintf("[v2:%s,v1:%s]", c.MonV2, c.MonV1) }

// Bootstrap creates the cluster (mon, OSD, pool) and starts it.
func (c *Cluster) Bootstrap(ctx context.Context) error {
	d := c.cfg.Dir
	for _, sub := range []string{"run", "log", "crash", "mon.a", "osd.0"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
	}
	fsid, err := c.out(ctx, "uuidgen")
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if err := os.WriteFile(c.ConfPath, []byte(c.conf(strings.TrimSpace(fsid))), 0o644); err != nil {
		return fmt.Errorf("bootstrap: write conf: %w", err)
	}
	monKR := filepath.Join(d, "mon.keyring")
	steps := [][]string{
		{"ceph-authtool", "--create-keyring", monKR, "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"},
		{"ceph-authtool", "--create-keyring", c.AdminKeyring, "--gen-key", "-n", "client.admin",
			"--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mgr", "allow *", "--cap", "mds", "allow *"},
		{"ceph-authtool", monKR, "--import-keyring", c.AdminKeyring},
		{"monmaptool", "--create", "--fsid", strings.TrimSpace(fsid), "--addv", "a", c.MonHost(), filepath.Join(d, "monmap")},
		{"ceph-mon", "-c", c.ConfPath, "-i", "a", "--mkfs", "--monmap", filepath.Join(d, "monmap"), "--keyring", monKR},
	}
	for _, s := range steps {
		if _, err := c.out(ctx, s...); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
	}
	if err := c.startMon(ctx); err != nil {
		return err
	}
	if err := c.mkOSD(ctx); err != nil {
		return err
	}
	if err := c.StartOSD(ctx); err != nil {
		return err
	}
	return c.initPool(ctx)
}

func (c *Cluster) mkOSD(ctx context.Context) error {
	uuid, err := c.out(ctx, "uuidgen")
	if err != nil {
		return fmt.Errorf("make osd: %w", err)
	}
	secret, err := c.out(ctx, "ceph-authtool", "--gen-print-key")
	if err != nil {
		return fmt.Errorf("make osd: %w", err)
	}
	uuid, secret = strings.TrimSpace(uuid), strings.TrimSpace(secret)
	in := fmt.Sprintf(`{"cephx_secret": %q}`, secret)
	id, err := c.run(ctx, []byte(in), c.cephArgs("osd", "new", uuid, "-i", "-")...)
	if err != nil {
		return fmt.Errorf("make osd: %w", err)
	}
	if strings.TrimSpace(string(id)) != "0" {
		return fmt.Errorf("make osd: unexpected osd id %q", id)
	}
	kr := filepath.Join(c.cfg.Dir, "osd.0", "keyring")
	if _, err := c.out(ctx, "ceph-authtool", "--create-keyring", kr, "--name", "osd.0", "--add-key", secret); err != nil {
		return fmt.Errorf("make osd: %w", err)
	}
	if _, err := c.out(ctx, "ceph-osd", "-c", c.ConfPath, "-i", "0", "--mkfs", "--osd-uuid", uuid); err != nil {
		return fmt.Errorf("make osd: %w", err)
	}
	return nil
}

func (c *Cluster) initPool(ctx context.Context) error {
	if _, err := c.Ceph(ctx, "osd", "pool", "create", c.cfg.Pool, "8", "8", "replicated"); err != nil {
		return fmt.Errorf("init pool: %w", err)
	}
	if _, err := c.Rbd(ctx, "pool", "init", c.cfg.Pool); err != nil {
		return fmt.Errorf("init pool: %w", err)
	}
	return nil
}

func (c *Cluster) conf(fsid string) string {
	d := c.cfg.Dir
	return fmt.Sprintf(`[global]
fsid = %[1]s
mon host = %[2]s
mon initial members = a
public addr = %[3]s
cluster addr = %[3]s
ms bind ipv4 = true
ms bind ipv6 = false
ms bind port min = %[4]d
ms bind port max = %[5]d
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
paxos propose interval = 0.1
mon data avail warn = 1
mon data avail crit = 1
run dir = %[6]s/run
pid file = %[6]s/run/$name.pid
admin socket = %[6]s/run/$name.asok
log file = %[6]s/log/$name.log
crash dir = %[6]s/crash
[mon]
mon data = %[6]s/$name
mon cluster log file = %[6]s/log/cluster.log
[osd]
osd data = %[6]s/$name
keyring = %[6]s/$name/keyring
osd objectstore = memstore
memstore device bytes = %[7]d
osd crush update on start = true
osd fast shutdown = false
osd op num shards = 1
osd op num threads per shard = 2
[client]
keyring = %[8]s
log file = %[6]s/log/$name.$pid.log
admin socket =
`, fsid, c.MonHost(), c.cfg.IP, c.osdMin, c.osdMin+99, d, c.cfg.MemstoreBytes, c.AdminKeyring)
}
