package netconsole

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"netboot/internal/clock"
	"netboot/internal/store"
	"netboot/internal/store/sqlite"
)

type testServer struct {
	s     *Server
	m     *Metrics
	db    *sqlite.DB
	b     *Broker
	errc  chan error
	addr  *net.UDPAddr
	close func()
}

func startServer(t *testing.T, db *sqlite.DB, res Resolver, tr Tracker) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	b := NewBroker(m)
	s, err := New(Config{Listen: "127.0.0.1:0", FlushInterval: 20 * time.Millisecond},
		Deps{Log: zaptest.NewLogger(t), Clock: clock.Real{}, Resolver: res, Tracker: tr, Store: db, Broker: b, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{s: s, m: m, db: db, b: b, errc: make(chan error, 1), addr: s.Addr().(*net.UDPAddr)}
	go func() { ts.errc <- s.Serve(context.Background()) }()
	ts.close = func() {
		s.Close()
		if err := <-ts.errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	return ts
}

func sendFrom(t *testing.T, from string, to *net.UDPAddr, payloads ...string) {
	t.Helper()
	c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(from)), to)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, p := range payloads {
		if _, err := c.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Microsecond) // keep the order a kernel would send in
	}
}

// waitReceived polls until the server has read n datagrams (the test has
// a deadline of its own; this is not a timing assertion).
func waitReceived(t *testing.T, s *Server, n uint64) {
	t.Helper()
	for i := 0; s.Received() < n; i++ {
		if i > 2000 {
			t.Fatalf("received %d datagrams, want %d", s.Received(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func payloads(t *testing.T, name string) []string {
	var out []string
	for _, c := range readCapture(t, name) {
		out = append(out, c.Payload)
	}
	return out
}

func TestServerStoresCaptures(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "nb.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	res := ResolverFunc(func(ip netip.Addr) (string, bool) {
		return "guest", ip == netip.MustParseAddr("127.0.0.1")
	})
	ts := startServer(t, db, res, nil)
	sub := ts.b.Subscribe("guest", 100)
	plain, ext := payloads(t, "netconsole-plain.jsonl"), payloads(t, "netconsole-extended.jsonl")
	sendFrom(t, "127.0.0.1:0", ts.addr, plain...)
	sendFrom(t, "127.0.0.2:0", ts.addr, ext...)
	waitReceived(t, ts.s, uint64(len(plain)+len(ext)))
	ts.close()

	ctx := context.Background()
	got, err := db.QueryLogs(ctx, store.LogQuery{Host: "guest"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 20 || got[0].Text[:14] != "Linux version " || got[19].Text != "NBTEST: poweroff uptime=3.68" {
		t.Fatalf("guest lines: %d, first %q", len(got), texts(got[:1]))
	}
	unknown, err := db.QueryLogs(ctx, store.LogQuery{Host: "unknown:127.0.0.2", HasMaxLevel: true, MaxLevel: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(unknown) != 1 || unknown[0].Text != "NBTEST: an error-level line (prio 3)" {
		t.Errorf("unknown host, level <= 3: %q", texts(unknown))
	}
	if n := testutil.ToFloat64(ts.m.byResult[ResultUnknownHost]); n != float64(len(ext)) {
		t.Errorf("unknown_host datagrams = %v, want %d", n, len(ext))
	}
	if n := testutil.ToFloat64(ts.m.linesStored); n != 32 {
		t.Errorf("lines stored = %v, want 32", n)
	}
	live := 0
	for range sub.C {
		live++
		if live == 20 {
			break
		}
	}
	ts.b.Unsubscribe(sub)

	// History survives a restart, and a new boot gets the next number.
	ts2 := startServer(t, db, res, nil)
	sendFrom(t, "127.0.0.1:0", ts2.addr, plain[0])
	waitReceived(t, ts2.s, 1)
	ts2.close()
	boots, err := db.LogBoots(ctx, "guest")
	if err != nil {
		t.Fatal(err)
	}
	if len(boots) != 2 || boots[0].BootID != 1 || boots[0].Lines != 20 || boots[1].BootID != 2 || boots[1].Lines != 1 {
		t.Errorf("boots after restart: %+v", boots)
	}
}

func TestServerKernelDrops(t *testing.T) {
	// A tiny receive buffer and a server that does not read: the kernel
	// drops, and SO_RXQ_OVFL reports it once reading resumes.
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{RcvBuf: 4096}, Deps{Log: zaptest.NewLogger(t)}, c)
	if err != nil {
		t.Fatal(err)
	}
	br, ok, err := newBatchReader(c, 8)
	if err != nil || !ok {
		t.Fatalf("batch reader: %v %v", ok, err)
	}
	msg := make([]string, 200)
	for i := range msg {
		msg[i] = "6,1,1,-;flood\n"
	}
	to := c.LocalAddr().(*net.UDPAddr)
	sendFrom(t, "127.0.0.1:0", to, msg...)
	queued := 0
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	for {
		n, err := br.read()
		if err != nil {
			break // drained: the deadline passed
		}
		queued += n
	}
	c.SetReadDeadline(time.Time{})
	// The drop count rides on the next datagram queued after the drops.
	sendFrom(t, "127.0.0.1:0", to, "6,2,2,-;after\n")
	n, err := br.read()
	if err != nil {
		t.Fatal(err)
	}
	drops := br.newDrops(n)
	if queued >= len(msg) || int(drops) != len(msg)-queued {
		t.Errorf("queued %d of %d, kernel reported %d drops; want %d", queued, len(msg), drops, len(msg)-queued)
	}
	_ = s
	c.Close()
}

func TestUnknownSourcesCannotCrowdOutKnownHosts(t *testing.T) {
	res := ResolverFunc(func(ip netip.Addr) (string, bool) { return "known", ip == netip.MustParseAddr("127.0.0.9") })
	s, err := New(Config{Listen: "127.0.0.1:0", MaxHosts: 2}, Deps{Log: zaptest.NewLogger(t), Resolver: res})
	if err != nil {
		t.Fatal(err)
	}
	defer s.closeConns()
	cache := map[netip.Addr]addrEntry{}
	var out lineBuf
	for _, src := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.9"} {
		s.handle(netip.MustParseAddr(src), []byte("6,1,1,-;x\n"), time.Now(), cache, &out)
	}
	want := "[unknown:127.0.0.2 unknown:127.0.0.3 known]"
	var got []string
	for _, l := range out.lines {
		got = append(got, l.Host)
	}
	if fmt.Sprint(got) != want {
		t.Errorf("hosts with lines: %v, want %s", got, want)
	}
	if out.tally.n[resultIndex[ResultDropped]] != 1 {
		t.Errorf("dropped = %d, want 1", out.tally.n[resultIndex[ResultDropped]])
	}
}

// A clean shutdown stores what is still in reassembly, flagged truncated.
func TestServerFlushesOnShutdown(t *testing.T) {
	db, err := sqlite.Open(context.Background(), ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ts := startServer(t, db, nil, nil)
	sendFrom(t, "127.0.0.1:0", ts.addr, "6,7,100,-,ncfrag=0/20;first half ")
	sendFrom(t, "127.0.0.2:0", ts.addr, "[    1.0] plain piece without end "+strings.Repeat("z", 1000))
	waitReceived(t, ts.s, 2)
	ts.close()
	var got []string
	for _, host := range []string{"unknown:127.0.0.1", "unknown:127.0.0.2"} {
		lines, err := db.QueryLogs(context.Background(), store.LogQuery{Host: host})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			got = append(got, fmt.Sprintf("%.20s/%d", l.Text, l.Flags&store.LogFlagTruncated))
		}
	}
	sort.Strings(got)
	if want := "[first half /4 plain piece without /4]"; fmt.Sprint(got) != want {
		t.Errorf("stored after shutdown: %v, want %s", got, want)
	}
}
