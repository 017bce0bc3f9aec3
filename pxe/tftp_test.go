package pxe

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"netboot/internal/clock"
	"netboot/internal/config"
	"netboot/internal/event"
)

// waitFor polls until n events are recorded (a transfer's event is emitted
// just after its last packet, so a client may return first).
func (l *eventLog) waitFor(t testing.TB, n int) []event.Event {
	t.Helper()
	for i := 0; i < 500; i++ {
		if ev := l.Events(); len(ev) >= n {
			return ev
		}
		time.Sleep(10 * time.Millisecond)
	}
	ev := l.Events()
	t.Fatalf("got %d events, want %d: %+v", len(ev), n, ev)
	return nil
}

type tftpFixture struct {
	cfg    *config.Config
	addr   *net.UDPAddr
	events *eventLog
	reg    *prometheus.Registry
	srv    *TFTPServer
}

// startTFTP serves a fresh artifact tree on 127.0.0.1:0.
func startTFTP(t testing.TB, tc TFTPConfig, clk clock.Clock) *tftpFixture {
	t.Helper()
	cfg, arts := newArtTree(t)
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fx := &tftpFixture{cfg: cfg, addr: conn.LocalAddr().(*net.UDPAddr), events: &eventLog{}, reg: prometheus.NewRegistry()}
	fx.srv, err = NewTFTP(tc, conn, arts, fx.events, zaptest.NewLogger(t), clk, fx.reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fx.srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve returned %v, want nil on shutdown", err)
		}
	})
	return fx
}

// writeArtifact adds a file of random bytes to the fixture's tree.
func (fx *tftpFixture) writeArtifact(t testing.TB, name string, size int) []byte {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	p := filepath.Join(fx.cfg.Server.ArtifactRoot, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// tftpRawClient speaks TFTP packet by packet, from 127.0.0.<last>.
type tftpRawClient struct {
	t    testing.TB
	conn *net.UDPConn
	srv  *net.UDPAddr
	tid  *net.UDPAddr
}

func newTFTPRawClient(t testing.TB, srv *net.UDPAddr, last byte) *tftpRawClient {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, last)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &tftpRawClient{t: t, conn: conn, srv: srv}
}

func tftpRRQ(op uint16, name, mode string, opts ...string) []byte {
	b := binary.BigEndian.AppendUint16(nil, op)
	for _, s := range append([]string{name, mode}, opts...) {
		b = append(append(b, s...), 0)
	}
	return b
}

func (c *tftpRawClient) request(p []byte) {
	c.t.Helper()
	if _, err := c.conn.WriteToUDP(p, c.srv); err != nil {
		c.t.Fatal(err)
	}
}

// recv returns the next packet (and locks onto the server's TID).
func (c *tftpRawClient) recv(timeout time.Duration) ([]byte, error) {
	buf := make([]byte, 70000)
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	n, from, err := c.conn.ReadFromUDP(buf)
	if err != nil {
		return nil, err
	}
	if c.tid == nil {
		c.tid = from
	}
	return buf[:n], nil
}

func (c *tftpRawClient) mustRecv() []byte {
	c.t.Helper()
	p, err := c.recv(5 * time.Second)
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	return p
}

func (c *tftpRawClient) send(p []byte) {
	c.t.Helper()
	if _, err := c.conn.WriteToUDP(p, c.tid); err != nil {
		c.t.Fatal(err)
	}
}

func tftpAck(block uint16) []byte { return []byte{0, opACK, byte(block >> 8), byte(block)} }

// fetch reads a whole file lock-step after the first packet.
func (c *tftpRawClient) fetch(first []byte, blksize int) []byte {
	c.t.Helper()
	var out []byte
	p := first
	tsize := -1
	if binary.BigEndian.Uint16(p) == opOACK {
		if v, ok := parseTFTPOACK(c.t, p)["tsize"]; ok {
			tsize, _ = strconv.Atoi(v)
		}
		c.send(tftpAck(0))
		p = c.mustRecv()
	}
	defer func() {
		if tsize >= 0 && len(out) != tsize {
			c.t.Fatalf("received %d bytes, OACK announced tsize %d", len(out), tsize)
		}
	}()
	for {
		if binary.BigEndian.Uint16(p) != opDATA {
			c.t.Fatalf("expected DATA, got %x", p)
		}
		out = append(out, p[4:]...)
		c.send(tftpAck(binary.BigEndian.Uint16(p[2:])))
		if len(p)-4 < blksize {
			return out
		}
		p = c.mustRecv()
	}
}

func parseTFTPOACK(t testing.TB, p []byte) map[string]string {
	t.Helper()
	if binary.BigEndian.Uint16(p) != opOACK {
		t.Fatalf("expected OACK, got %x", p)
	}
	f := bytes.Split(bytes.TrimSuffix(p[2:], []byte{0}), []byte{0})
	m := map[string]string{}
	for i := 0; i+1 < len(f); i += 2 {
		m[string(f[i])] = string(f[i+1])
	}
	return m
}

func expectTFTPError(t testing.TB, p []byte, code uint16) {
	t.Helper()
	if len(p) < 4 || binary.BigEndian.Uint16(p) != opERROR || binary.BigEndian.Uint16(p[2:]) != code {
		t.Fatalf("expected ERROR %d, got %q", code, p)
	}
}

func TestTFTPNegotiation(t *testing.T) {
	fx := startTFTP(t, TFTPConfig{BlockSizeMax: 1468}, clock.Real{})
	want := fx.writeArtifact(t, "blob.bin", 3*1468) // exact multiple: final empty block
	tests := []struct {
		name     string
		opts     []string
		wantOpts map[string]string
		blksize  int
	}{
		{"no options: plain RFC 1350", nil, nil, 512},
		{"tsize only", []string{"tsize", "0"}, map[string]string{"tsize": "4404"}, 512},
		{"blksize 1468 and tsize", []string{"blksize", "1468", "tsize", "0"}, map[string]string{"blksize": "1468", "tsize": "4404"}, 1468},
		{"blksize above max is capped", []string{"BLKSIZE", "8192", "tsize", "0"}, map[string]string{"blksize": "1468", "tsize": "4404"}, 1468},
		{"unknown options not acknowledged", []string{"windowsize", "16", "blksize", "1024"}, map[string]string{"blksize": "1024"}, 1024},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newTFTPRawClient(t, fx.addr, byte(100+i))
			c.request(tftpRRQ(opRRQ, "blob.bin", "octet", tc.opts...))
			first := c.mustRecv()
			if tc.wantOpts != nil {
				got := parseTFTPOACK(t, first)
				for k, v := range tc.wantOpts {
					if got[k] != v {
						t.Fatalf("OACK %v, want %v", got, tc.wantOpts)
					}
				}
				if len(got) != len(tc.wantOpts) {
					t.Fatalf("OACK %v, want exactly %v", got, tc.wantOpts)
				}
			}
			if got := c.fetch(first, tc.blksize); !bytes.Equal(got, want) {
				t.Fatalf("got %d bytes, want %d identical", len(got), len(want))
			}
		})
	}
	evs := fx.events.waitFor(t, len(tests))
	for _, e := range evs {
		if e.Kind != event.FileFetched || e.Attr("outcome") != "ok" || e.Attr("bytes") != "4404" || e.Host != "unknown:"+e.Attr("client")[:len(e.Attr("client"))-len(":")-len(tftpPortOf(e.Attr("client")))] {
			t.Errorf("event %+v", e)
		}
	}
}

func tftpPortOf(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}

func TestTFTPRefusals(t *testing.T) {
	fx := startTFTP(t, TFTPConfig{}, clock.Real{})
	tests := []struct {
		name    string
		pkt     []byte
		code    uint16
		outcome string
	}{
		{"write request", tftpRRQ(opWRQ, "rpi4/start4.elf", "octet"), tftpErrAccess, "refused"},
		{"dotdot", tftpRRQ(opRRQ, "../secret", "octet"), tftpErrAccess, "refused"},
		{"dotdot deep", tftpRRQ(opRRQ, "rpi4/../../secret", "octet"), tftpErrAccess, "refused"},
		{"absolute", tftpRRQ(opRRQ, "/etc/passwd", "octet"), tftpErrAccess, "refused"},
		{"symlink out", tftpRRQ(opRRQ, "escape", "octet"), tftpErrAccess, "refused"},
		{"symlink dir out", tftpRRQ(opRRQ, "rpi4/up/secret", "octet"), tftpErrAccess, "refused"},
		{"backslash", tftpRRQ(opRRQ, `..\secret`, "octet"), tftpErrAccess, "refused"},
		{"nul inside name", append(tftpRRQ(opRRQ, "rpi4/start4.elf", "octet")[:17], []byte("\x00../../secret\x00octet\x00")...), tftpErrIllegalOp, "malformed"},
		{"missing file", tftpRRQ(opRRQ, "nope.bin", "octet"), tftpErrNotFound, "not-found"},
		{"mail mode", tftpRRQ(opRRQ, "shared.txt", "mail"), tftpErrIllegalOp, "malformed"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newTFTPRawClient(t, fx.addr, byte(100+i))
			c.request(tc.pkt)
			expectTFTPError(t, c.mustRecv(), tc.code)
			if c.tid.Port == fx.addr.Port {
				t.Errorf("error came from the listening port, want a new TID")
			}
		})
	}
	evs := fx.events.waitFor(t, len(tests))
	for i, e := range evs {
		if e.Kind != event.FileFailed || e.Attr("proto") != "tftp" || e.Attr("outcome") == "" {
			t.Errorf("event %d: %+v", i, e)
		}
	}
	if got := testutil.ToFloat64(fx.srv.metrics.requests.WithLabelValues("wrq", "refused")); got != 1 {
		t.Errorf("wrq refused metric = %v, want 1", got)
	}
	if got := testutil.ToFloat64(fx.srv.metrics.Transfers.WithLabelValues("tftp", "refused")); got != 7 { // 6 names + the WRQ
		t.Errorf("refused transfers metric = %v, want 7", got)
	}
}

// TestTFTPPiSequence plays the Raspberry Pi 4 bootloader's TFTP sequence
// (rpi-eeprom#74/#87): a probe ended with ERROR 0 "Early terminate", a
// probe of a missing file, then the files, all with tsize and blksize 1024.
func TestTFTPPiSequence(t *testing.T) {
	fx := startTFTP(t, TFTPConfig{}, clock.Real{})
	c := newTFTPRawClient(t, fx.addr, 77) // the Pi's address is not in the inventory
	probe := func(name string) {
		c.tid = nil
		c.request(tftpRRQ(opRRQ, name, "octet", "tsize", "0", "blksize", "1024"))
		p := c.mustRecv()
		if binary.BigEndian.Uint16(p) == opERROR {
			return
		}
		c.send(tftpAck(0))
		c.mustRecv()
		c.send(errorPacket(0, "Early terminate"))
	}
	get := func(name string) []byte {
		c.tid = nil
		c.request(tftpRRQ(opRRQ, name, "octet", "tsize", "0", "blksize", "1024"))
		return c.fetch(c.mustRecv(), 1024)
	}
	probe("d9780558/start4.elf")
	probe("d9780558/start.elf") // missing: file not found, normal
	cfgTxt := get("d9780558/config.txt")
	for _, f := range []string{"d9780558/start4.elf", "d9780558/fixup4.dat", "d9780558/cmdline.txt",
		"d9780558/bcm2711-rpi-cm4.dtb", "d9780558/kernel8.img", "d9780558/initrd.img"} {
		get(f)
	}
	if want := "# pi-a serial d9780558\narm_64bit=1\n"; string(cfgTxt) != want {
		t.Fatalf("config.txt = %q, want %q", cfgTxt, want)
	}
	evs := fx.events.waitFor(t, 9)
	wantStages := map[string]event.Stage{"d9780558/start4.elf": event.StageFirmware, "d9780558/kernel8.img": event.StageKernel, "d9780558/initrd.img": event.StageInitramfs}
	var early, notFound int
	for _, e := range evs {
		if e.Host != "pi-a" {
			t.Errorf("event attributed to %q, want pi-a: %+v", e.Host, e)
		}
		switch e.Attr("outcome") {
		case "early-terminate":
			early++
			if e.Failed || e.Stage != event.StageNone || e.Kind != event.FileFetched {
				t.Errorf("early terminate must be a normal, stage-less fetch: %+v", e)
			}
		case "not-found":
			notFound++
		case "ok":
			if s, ok := wantStages[e.Attr("file")]; ok && e.Stage != s {
				t.Errorf("%s: stage %s, want %s", e.Attr("file"), e.Stage, s)
			}
		default:
			t.Errorf("unexpected outcome: %+v", e)
		}
	}
	if early != 1 || notFound != 1 {
		t.Fatalf("early terminates %d, not found %d; want 1 and 1", early, notFound)
	}
	if got := testutil.ToFloat64(fx.srv.metrics.Transfers.WithLabelValues("tftp", "early-terminate")); got != 1 {
		t.Errorf("early-terminate metric %v", got)
	}
	if got := testutil.ToFloat64(fx.srv.metrics.Transfers.WithLabelValues("tftp", "failed")) +
		testutil.ToFloat64(fx.srv.metrics.Transfers.WithLabelValues("tftp", "timeout")); got != 0 {
		t.Errorf("failures counted: %v", got)
	}
}

// TestTFTPRetransmitOnlyAfterTimeout drives the retransmit timer with a
// fake clock: a duplicate ACK gets no answer, the block is resent only
// once the timeout passed, and after Retries resends the transfer fails.
func TestTFTPRetransmitOnlyAfterTimeout(t *testing.T) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	fx := startTFTP(t, TFTPConfig{Timeout: 2 * time.Second, Retries: 2}, clk)
	c := newTFTPRawClient(t, fx.addr, 50)
	c.request(tftpRRQ(opRRQ, "rpi4/start4.elf", "octet", "blksize", "1024"))
	parseTFTPOACK(t, c.mustRecv())
	c.send(tftpAck(0))
	data1 := c.mustRecv()
	quiet := func(why string) {
		t.Helper()
		if p, err := c.recv(300 * time.Millisecond); err == nil {
			t.Fatalf("%s: server sent %x", why, p[:4])
		}
	}
	c.send(tftpAck(0)) // duplicate ACK of the OACK
	quiet("duplicate ACK")
	clk.Advance(1900 * time.Millisecond)
	quiet("before the timeout")
	for i := 0; i < 2; i++ {
		clk.Advance(200 * time.Millisecond)
		if p := c.mustRecv(); !bytes.Equal(p, data1) {
			t.Fatalf("retransmit %d: got %x, want DATA 1 again", i, p[:4])
		}
		clk.Advance(1900 * time.Millisecond)
	}
	clk.Advance(200 * time.Millisecond)
	evs := fx.events.waitFor(t, 1)
	e := evs[0]
	if e.Kind != event.FileFailed || !e.Failed || e.Attr("outcome") != "timeout" || e.Stage != event.StageFirmware {
		t.Fatalf("event %+v, want a failed firmware fetch with outcome timeout", e)
	}
	if got := testutil.ToFloat64(fx.srv.metrics.retransmits); got != 2 {
		t.Fatalf("retransmits metric %v, want 2", got)
	}
}

// TestTFTPRetransmittedRRQ: a client that resends its RRQ before it saw
// our OACK gets one transfer, not two (the second would fail later and put
// a false failure on the boot timeline).
func TestTFTPRetransmittedRRQ(t *testing.T) {
	fx := startTFTP(t, TFTPConfig{}, clock.Real{})
	c := newTFTPRawClient(t, fx.addr, 60)
	req := tftpRRQ(opRRQ, "rpi4/fixup4.dat", "octet", "tsize", "0")
	c.request(req)
	c.request(req)
	first := c.mustRecv()
	if p, err := c.recv(300 * time.Millisecond); err == nil {
		t.Fatalf("second transfer started: %x", p)
	}
	if got := string(c.fetch(first, 512)); got != "fixup" {
		t.Fatalf("got %q", got)
	}
	evs := fx.events.waitFor(t, 1)
	time.Sleep(100 * time.Millisecond)
	if evs = fx.events.Events(); len(evs) != 1 || evs[0].Attr("outcome") != "ok" {
		t.Fatalf("events %+v, want one ok fetch", evs)
	}
	if got := testutil.ToFloat64(fx.srv.metrics.requests.WithLabelValues("rrq", "duplicate")); got != 1 {
		t.Fatalf("duplicate metric %v", got)
	}
}

// TestTFTPCloseBeforeServe: Close releases everything and Serve then
// returns nil at once.
func TestTFTPCloseBeforeServe(t *testing.T) {
	_, arts := newArtTree(t)
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewTFTP(TFTPConfig{}, conn, arts, nil, zaptest.NewLogger(t), clock.Real{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(context.Background()); err != nil {
		t.Fatalf("Serve after Close = %v, want nil", err)
	}
}

// TestTFTPUncachedFiles serves from the open file (cache off, as for
// files above CacheMaxFile), in octet and netascii mode.
func TestTFTPUncachedFiles(t *testing.T) {
	cfg, _ := newArtTree(t)
	arts, err := NewArtifacts(cfg, nil, ArtifactsConfig{CacheBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer arts.Close()
	want := make([]byte, 300_000)
	rand.Read(want)
	if err := os.WriteFile(filepath.Join(cfg.Server.ArtifactRoot, "big.bin"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewTFTP(TFTPConfig{}, conn, arts, nil, zaptest.NewLogger(t), clock.Real{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	addr := conn.LocalAddr().(*net.UDPAddr)
	tests := []struct {
		mode string
		want []byte
	}{
		{"octet", want},
		{"netascii", toNetascii(want)},
	}
	for i, tc := range tests {
		c := newTFTPRawClient(t, addr, byte(90+i))
		c.request(tftpRRQ(opRRQ, "big.bin", tc.mode, "blksize", "1468", "tsize", "0"))
		first := c.mustRecv()
		if got := parseTFTPOACK(t, first)["tsize"]; got != strconv.Itoa(len(tc.want)) {
			t.Fatalf("%s: tsize %s, want %d", tc.mode, got, len(tc.want))
		}
		if got := c.fetch(first, 1468); !bytes.Equal(got, tc.want) {
			t.Fatalf("%s: got %d bytes, want %d identical", tc.mode, len(got), len(tc.want))
		}
	}
}
