package netconsole

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"netboot/internal/clock"
	"netboot/internal/event"
	"netboot/internal/store"
)

// Config configures the collector. Zero values mean the defaults.
type Config struct {
	// Listen is the UDP address New opens when it is given no sockets.
	// Default 127.0.0.1:6666.
	Listen string
	// Sockets is how many SO_REUSEPORT sockets New opens on Listen (one
	// reader goroutine each; the kernel spreads sources over them).
	// Default 2.
	Sockets int
	// RcvBuf is the SO_RCVBUF set on every socket (SO_RCVBUFFORCE when
	// running as root). Default 4 MiB; negative leaves the system default.
	RcvBuf int
	// Batch is how many datagrams one recvmmsg call reads. Default 64.
	Batch int
	// Coalesce is how long a reader pauses after a read that returned less
	// than a quarter batch, so that the next read finds more datagrams:
	// fewer wakeups and system calls per datagram for at most this much
	// extra latency (the socket buffer holds the arrivals meanwhile).
	// Default 0: off (under CPU contention the pause overshoots and the
	// socket buffer overflows sooner).
	Coalesce time.Duration
	// MaxHosts bounds the unknown sources (not in the inventory, leases or
	// API callers) with per-host state; datagrams from further unknown
	// sources are dropped and counted. Known hosts always get state, so a
	// flood from spoofed addresses cannot crowd them out. Default 4096.
	MaxHosts int
	// ResolveTTL is how long a source address → host answer is cached.
	// Default 5s.
	ResolveTTL time.Duration
	// FlushLines and FlushInterval bound how long lines wait before they
	// are written to the store (one transaction per batch). Defaults 16384
	// lines, 200ms.
	FlushLines    int
	FlushInterval time.Duration
	// Backlog bounds the batches waiting for the store; when full, readers
	// wait (and the kernel buffer, then its drop counter, absorbs the
	// excess). Default 4.
	Backlog int
	// Retention and MaxBytes prune the store every PruneInterval (default
	// 1m). Zero Retention/MaxBytes: no pruning on that axis.
	Retention     time.Duration
	MaxBytes      int64
	PruneInterval time.Duration
	Assembler     AssemblerConfig
}

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:6666"
	}
	if c.Sockets <= 0 {
		c.Sockets = 2
	}
	if c.RcvBuf == 0 {
		c.RcvBuf = 4 << 20
	}
	if c.Batch <= 0 {
		c.Batch = 64
	}
	if c.MaxHosts <= 0 {
		c.MaxHosts = 4096
	}
	if c.ResolveTTL <= 0 {
		c.ResolveTTL = 5 * time.Second
	}
	if c.FlushLines <= 0 {
		c.FlushLines = 16384
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = 200 * time.Millisecond
	}
	if c.Backlog <= 0 {
		c.Backlog = 4
	}
	if c.PruneInterval <= 0 {
		c.PruneInterval = time.Minute
	}
}

// Deps are the collector's collaborators. Every field may be nil except
// Log and Clock.
type Deps struct {
	Log      *zap.Logger
	Clock    clock.Clock
	Resolver Resolver
	Tracker  Tracker
	Events   event.Sink
	Store    store.LogStore
	Broker   *Broker
	Metrics  *Metrics
	// Observer gets every line of an inventory host (failure signatures,
	// netconsole smoke checks); it must not block.
	Observer LineObserver
}

// LineObserver is the tracker's line input (internal/boot.Tracker.ObserveLine).
type LineObserver interface {
	ObserveLine(host string, bootID int64, line string)
}

// Server is the netconsole collector.
type Server struct {
	cfg   Config
	deps  Deps
	conns []net.PacketConn
	asm   *Assembler
	w     *writer

	mu           sync.Mutex
	hosts        map[string]*hostState
	unknownHosts int

	kernelDrops atomic.Uint64
	dropLogAt   atomic.Int64
	received    atomic.Uint64
	closeOnce   sync.Once
	closed      chan struct{}
}

type addrEntry struct {
	h  *hostState
	at time.Time
}

// New builds a collector reading from conns, or, with none, from
// cfg.Sockets SO_REUSEPORT sockets it opens on cfg.Listen.
func New(cfg Config, deps Deps, conns ...net.PacketConn) (*Server, error) {
	cfg.setDefaults()
	if deps.Log == nil {
		deps.Log = zap.NewNop()
	}
	if deps.Clock == nil {
		deps.Clock = clock.Real{}
	}
	if len(conns) == 0 {
		var err error
		if conns, err = listenReusePort(cfg.Listen, cfg.Sockets); err != nil {
			return nil, err
		}
	}
	for _, c := range conns {
		if cfg.RcvBuf > 0 {
			got, err := setRcvBuf(c, cfg.RcvBuf)
			if err != nil {
				deps.Log.Warn("netconsole: receive buffer not set as configured", zap.Error(err), zap.Int("rcvbuf", got))
			}
		}
	}
	s := &Server{cfg: cfg, deps: deps, conns: conns, hosts: map[string]*hostState{}, closed: make(chan struct{})}
	var last LastBootFunc
	if deps.Store != nil {
		last = s.lastStoredBoot
	}
	s.asm = NewAssembler(cfg.Assembler, deps.Log, deps.Tracker, deps.Events, deps.Metrics, last)
	s.w = newWriter(cfg, deps)
	return s, nil
}

func listenReusePort(addr string, n int) ([]net.PacketConn, error) {
	lc := net.ListenConfig{Control: reusePortControl}
	var conns []net.PacketConn
	for i := 0; i < n; i++ {
		if i == 1 {
			addr = conns[0].LocalAddr().String() // same port when :0 was asked
		}
		c, err := lc.ListenPacket(context.Background(), "udp", addr)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, fmt.Errorf("netconsole: listen on %s: %w", addr, err)
		}
		conns = append(conns, c)
	}
	return conns, nil
}

// Addr is the address of the first socket.
func (s *Server) Addr() net.Addr { return s.conns[0].LocalAddr() }

// KernelDrops is the number of datagrams the kernel reported dropping for
// lack of receive-buffer space since the server started.
func (s *Server) KernelDrops() uint64 { return s.kernelDrops.Load() }

// Received is the number of datagrams read from the sockets.
func (s *Server) Received() uint64 { return s.received.Load() }

// Serve reads until ctx is cancelled or Close is called, then flushes
// every pending line to the store and returns nil.
func (s *Server) Serve(ctx context.Context) error {
	s.deps.Log.Info("netconsole: listening", zap.Stringer("addr", s.Addr()), zap.Int("sockets", len(s.conns)))
	stopCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	readers := make([]*batchReader, len(s.conns))
	for i, c := range s.conns {
		br, ok, err := newBatchReader(c, s.cfg.Batch)
		if err != nil {
			s.deps.Log.Warn("netconsole: batched reads unavailable, reading one datagram at a time", zap.Error(err))
		}
		if ok {
			readers[i] = br
		}
	}
	go func() {
		select {
		case <-stopCtx.Done():
		case <-s.closed:
		}
		for _, br := range readers {
			if br != nil {
				s.addKernelDrops(br.finalDrops())
			}
		}
		s.closeConns()
	}()
	stopWriter := s.w.start()
	stopSweep := s.startSweeper()
	var wg sync.WaitGroup
	errs := make(chan error, len(s.conns))
	for i, c := range s.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.readLoop(c, readers[i]); err != nil {
				errs <- err
				cancel()
			}
		}()
	}
	wg.Wait()
	stopSweep()
	s.flushAll()
	stopWriter()
	s.deps.Log.Info("netconsole: stopped", zap.Uint64("datagrams", s.Received()), zap.Uint64("kernel_drops", s.KernelDrops()))
	close(errs)
	return <-errs
}

// Close stops Serve.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return nil
}

func (s *Server) closeConns() {
	for _, c := range s.conns {
		c.Close()
	}
}

// readLoop reads one socket until it is closed.
func (s *Server) readLoop(c net.PacketConn, br *batchReader) error {
	cache := map[netip.Addr]addrEntry{}
	var out lineBuf
	if br == nil {
		return s.readSlow(c, cache, &out)
	}
	for {
		n, err := br.read()
		if errors.Is(err, errClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("netconsole: read: %w", err)
		}
		now := s.deps.Clock.Now()
		for i := 0; i < n; i++ {
			s.handle(br.source(i), br.payload(i), now, cache, &out)
		}
		s.addKernelDrops(br.newDrops(n))
		s.received.Add(uint64(n))
		s.deliver(&out)
		if n < s.cfg.Batch/4 && s.cfg.Coalesce > 0 {
			time.Sleep(s.cfg.Coalesce) // not the clock: a scheduling pause, no logic depends on it
		}
	}
}

// addKernelDrops counts drops the kernel reported; the warning is logged
// at most every 10 seconds (the metric has every drop).
func (s *Server) addKernelDrops(d uint32) {
	if d == 0 {
		return
	}
	total := s.kernelDrops.Add(uint64(d))
	s.deps.Metrics.kernelDropped(uint64(d))
	now := s.deps.Clock.Now().UnixNano()
	if last := s.dropLogAt.Load(); now-last >= int64(10*time.Second) && s.dropLogAt.CompareAndSwap(last, now) {
		s.deps.Log.Warn("netconsole: kernel dropped datagrams: socket receive buffer full",
			zap.Uint32("dropped", d), zap.Uint64("dropped_total", total), zap.Int("rcvbuf", s.cfg.RcvBuf))
	}
}

// readSlow is the fallback for sockets that are not UDP sockets.
func (s *Server) readSlow(c net.PacketConn, cache map[netip.Addr]addrEntry, out *lineBuf) error {
	buf := make([]byte, bufSize)
	for {
		n, addr, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("netconsole: read: %w", err)
		}
		var ip netip.Addr
		if ua, ok := addr.(*net.UDPAddr); ok {
			ip, _ = netip.AddrFromSlice(ua.IP)
		}
		s.handle(ip.Unmap(), buf[:n], s.deps.Clock.Now(), cache, out)
		s.received.Add(1)
		s.deliver(out)
	}
}

// handle processes one datagram.
func (s *Server) handle(src netip.Addr, payload []byte, now time.Time, cache map[netip.Addr]addrEntry, out *lineBuf) {
	e, ok := cache[src]
	if !ok || now.Sub(e.at) > s.cfg.ResolveTTL {
		e = s.lookup(src, now)
		if e.h != nil {
			cache[src] = e
		}
	}
	if e.h == nil {
		out.tally.add(ResultDropped, len(payload))
		return
	}
	out.tally.add(s.asm.Process(e.h, payload, now, out), len(payload))
}

// lookup resolves src and returns its host state, creating it within the
// MaxHosts bound.
func (s *Server) lookup(src netip.Addr, now time.Time) addrEntry {
	name, known := "", false
	if s.deps.Resolver != nil {
		name, known = s.deps.Resolver.HostForIP(src)
	}
	if !known {
		name = UnknownHost(src)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.hosts[name]
	if !ok {
		if !known && s.unknownHosts >= s.cfg.MaxHosts {
			s.deps.Log.Debug("netconsole: too many unknown sources, datagram dropped", zap.Stringer("src", src))
			return addrEntry{}
		}
		h = newHostState(name, !known)
		s.hosts[name] = h
		if !known {
			s.unknownHosts++
		}
		s.deps.Metrics.setHosts(len(s.hosts))
		if known {
			s.deps.Log.Info("netconsole: first datagram from host", zap.String("host", name), zap.Stringer("src", src))
		} else {
			s.deps.Log.Warn("netconsole: datagrams from an unknown source kept as "+name, zap.Stringer("src", src))
		}
	}
	return addrEntry{h: h, at: now}
}

// deliver hands the lines of a processed batch to the store writer and the
// live broker, and resets out.
func (s *Server) deliver(out *lineBuf) {
	s.deps.Metrics.flush(&out.tally)
	if len(out.lines) == 0 {
		return
	}
	s.deps.Broker.Publish(out.lines)
	if s.deps.Observer != nil {
		for i := range out.lines {
			if l := &out.lines[i]; !strings.HasPrefix(l.Host, unknownPrefix) {
				s.deps.Observer.ObserveLine(l.Host, l.BootID, l.Text)
			}
		}
	}
	s.w.add(out.lines) // copies
	clear(out.lines)
	out.lines = out.lines[:0]
}

// startSweeper periodically expires fragments of hosts that went quiet.
func (s *Server) startSweeper() (stop func()) {
	var mu sync.Mutex
	stopped := false
	var t clock.Timer
	var tick func()
	tick = func() {
		var out lineBuf
		now := s.deps.Clock.Now()
		for _, h := range s.hostList() {
			s.asm.sweepHost(h, now, &out)
		}
		s.deliver(&out)
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			t = s.deps.Clock.AfterFunc(s.asm.sweepEvery(), tick)
		}
	}
	mu.Lock()
	t = s.deps.Clock.AfterFunc(s.asm.sweepEvery(), tick)
	mu.Unlock()
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

func (s *Server) hostList() []*hostState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*hostState, 0, len(s.hosts))
	for _, h := range s.hosts {
		out = append(out, h)
	}
	return out
}

// flushAll emits what every host still holds (shutdown).
func (s *Server) flushAll() {
	var out lineBuf
	now := s.deps.Clock.Now()
	for _, h := range s.hostList() {
		s.asm.flushHost(h, now, &out)
	}
	s.deliver(&out)
}

func (s *Server) lastStoredBoot(host string) int64 {
	id, err := s.deps.Store.LastLogBoot(context.Background(), host)
	if err != nil {
		s.deps.Log.Warn("netconsole: reading stored boots failed", zap.String("host", host), zap.Error(err))
	}
	return id
}
