//go:build cgo && (pacific || quincy || reef || squid || tentacle || umbrella)

// Command holder plays a host's rbd client in tests: it opens an image,
// takes the exclusive lock (explicitly, so it never hands it over on
// request, like a kernel client mapped with "exclusive"), writes, prints
// its client address, and keeps writing until it is killed.
//
// Output (stdout, one line each):
//
//	HOLDING <ip:port/nonce> client.<id>    lock taken, first write done
//	W <start-unixnano> <end-unixnano>      a successful write
//	E <unixnano> <error>                   a failed write (e.g. -108 blocklisted)
//	FAIL <error>                           could not open/lock; exits 1
//
// -bind asks for another local IP (ms_bind_before_connect with
// public_addr); Ceph 16.2 librados ignores it, so tests run the holder in a
// simulated host's network namespace instead (cephlab.Net).
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"
)

var extraOpts []string

func main() {
	conf := flag.String("conf", "", "ceph.conf")
	user := flag.String("user", "admin", "cephx user without client.")
	pool := flag.String("pool", "rbd", "pool")
	image := flag.String("image", "", "image")
	bind := flag.String("bind", "", "local IP to connect from")
	interval := flag.Duration("interval", 100*time.Millisecond, "write interval")
	acquire := flag.Bool("acquire", true, "take the lock with rbd_lock_acquire (never hand it over)")
	flag.Func("opt", "extra ceph option key=value (repeatable)", func(s string) error { extraOpts = append(extraOpts, s); return nil })
	flag.Parse()
	out := bufio.NewWriter(os.Stdout)
	if err := run(out, *conf, *user, *pool, *image, *bind, *interval, *acquire); err != nil {
		fmt.Fprintf(out, "FAIL %v\n", err)
		out.Flush()
		os.Exit(1)
	}
}

func run(out *bufio.Writer, conf, user, pool, image, bind string, interval time.Duration, acquire bool) error {
	conn, err := rados.NewConnWithUser(user)
	if err != nil {
		return fmt.Errorf("new conn: %w", err)
	}
	if err := conn.ReadConfigFile(conf); err != nil {
		return fmt.Errorf("read %s: %w", conf, err)
	}
	if bind != "" {
		_ = conn.SetConfigOption("public_addr", bind)
		_ = conn.SetConfigOption("ms_bind_before_connect", "true")
	}
	for _, o := range extraOpts {
		k, v, _ := strings.Cut(o, "=")
		if err := conn.SetConfigOption(k, v); err != nil {
			return fmt.Errorf("set %s: %w", k, err)
		}
	}
	if err := conn.Connect(); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	ioctx, err := conn.OpenIOContext(pool)
	if err != nil {
		return fmt.Errorf("open pool: %w", err)
	}
	img, err := rbd.OpenImage(ioctx, image, rbd.NoSnapshot)
	if err != nil {
		return fmt.Errorf("open image: %w", err)
	}
	if acquire {
		if err := img.LockAcquire(rbd.LockModeExclusive); err != nil {
			return fmt.Errorf("lock acquire: %w", err)
		}
	}
	buf := bytes.Repeat([]byte{0xab}, 4096)
	if _, err := img.WriteAt(buf, 0); err != nil {
		return fmt.Errorf("first write: %w", err)
	}
	addr, _ := conn.GetAddrs()
	fmt.Fprintf(out, "HOLDING %s client.%d\n", addr, conn.GetInstanceID())
	out.Flush()
	for i := 1; ; i++ {
		start := time.Now()
		_, err := img.WriteAt(buf, int64(i%64)*4096)
		end := time.Now()
		if err != nil {
			fmt.Fprintf(out, "E %d %v\n", end.UnixNano(), err)
		} else {
			fmt.Fprintf(out, "W %d %d\n", start.UnixNano(), end.UnixNano())
		}
		out.Flush()
		time.Sleep(interval)
	}
}
