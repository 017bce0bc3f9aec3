package pxe

// The TFTP server. Read-only; one UDP socket per transfer (its own TID, as
// RFC 1350 wants and every boot ROM expects), but no goroutine per
// transfer: a few event loops (tftp_loop.go) multiplex all transfer
// sockets with epoll and send DATA from file contents cached in memory.
// github.com/pin/tftp/v3 was measured first (see pxe/bench and the
// report): its goroutine-and-deadline-per-packet send path costs about
// 1.5x dnsmasq's CPU per block, which on a shared 2-core box caps it at
// 0.7x dnsmasq's throughput; so the protocol is implemented here and
// pin/tftp serves as an independent client in the tests.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/net/ipv4"

	"netboot/internal/clock"
	"netboot/internal/event"
)

// TFTPConfig configures the TFTP server. Zero values mean the defaults.
type TFTPConfig struct {
	// BlockSizeMax caps the negotiated blksize. Default 1468.
	BlockSizeMax int
	// Timeout is the retransmit timeout. Default 2s; values below 1s are
	// raised to 1s (early retransmits hang the Raspberry Pi's start4.elf).
	Timeout time.Duration
	// Retries is how many retransmits of one packet before the transfer is
	// given up. Default 5.
	Retries int
	// Workers is the number of event loops. Default half of GOMAXPROCS,
	// at least 1 and at most 4: one loop already makes only two system
	// calls per block, and on a small box the cores are better left to
	// the kernel's loopback/NIC work and the other listeners (measured:
	// one loop used 10-20% less CPU per block than two on 2 cores).
	Workers int
}

func (c TFTPConfig) withDefaults() TFTPConfig {
	if c.BlockSizeMax == 0 {
		c.BlockSizeMax = 1468
	}
	c.BlockSizeMax = max(minBlockSize, min(c.BlockSizeMax, maxBlockSize))
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Second
	}
	c.Timeout = max(c.Timeout, time.Second)
	if c.Retries == 0 {
		c.Retries = 5
	}
	if c.Workers <= 0 {
		c.Workers = max(1, min(runtime.GOMAXPROCS(0)/2, 4))
	}
	return c
}

// TFTPServer serves the artifact tree over TFTP.
type TFTPServer struct {
	cfg     TFTPConfig
	conn    net.PacketConn
	files   *Artifacts
	sink    event.Sink
	log     *zap.Logger
	clk     clock.Clock
	metrics *tftpMetrics
	workers []*worker
	next    atomic.Uint32

	// active holds the transfers in progress by client endpoint and file.
	// A second RRQ for the same file from the same endpoint before the
	// client acknowledged anything is its retransmitted RRQ (our first
	// packet was slow or lost): it must not start a second transfer that
	// would later fail. Once the client has answered, a new RRQ is a new
	// request (e.g. the Pi fetching the file it just probed).
	activeMu sync.Mutex
	active   map[activeKey]*activeEntry

	lifeMu    sync.Mutex // orders Serve's start against Close
	serving   bool
	closeOnce sync.Once
	closed    chan struct{}
	wg        sync.WaitGroup
}

type tftpMetrics struct {
	*FileMetrics
	requests    *prometheus.CounterVec
	retransmits prometheus.Counter
	active      prometheus.Gauge
}

func newTFTPMetrics(reg prometheus.Registerer) *tftpMetrics {
	m := &tftpMetrics{
		FileMetrics: NewFileMetrics(reg),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netboot_tftp_requests_total",
			Help: "TFTP requests on the listening port by opcode and decision.",
		}, []string{"op", "result"}),
		retransmits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "netboot_tftp_retransmits_total",
			Help: "TFTP packets sent again after the retransmit timeout.",
		}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "netboot_tftp_active_transfers",
			Help: "TFTP transfers in progress.",
		}),
	}
	m.requests = registerOrExisting(reg, m.requests)
	m.retransmits = registerOrExisting(reg, m.retransmits)
	m.active = registerOrExisting(reg, m.active)
	return m
}

// NewTFTP returns a server that answers requests arriving on conn (an
// already-bound UDP socket; tests use 127.0.0.1:0). reg may be nil.
func NewTFTP(cfg TFTPConfig, conn net.PacketConn, files *Artifacts, sink event.Sink,
	log *zap.Logger, clk clock.Clock, reg prometheus.Registerer) (*TFTPServer, error) {
	if sink == nil {
		sink = event.Discard
	}
	s := &TFTPServer{cfg: cfg.withDefaults(), conn: conn, files: files, sink: sink,
		log: log.Named("tftp"), clk: clk, metrics: newTFTPMetrics(reg), closed: make(chan struct{}),
		active: map[activeKey]*activeEntry{}}
	for i := 0; i < s.cfg.Workers; i++ {
		w, err := newWorker(s)
		if err != nil {
			s.closeWorkers()
			return nil, fmt.Errorf("new tftp server: %w", err)
		}
		s.workers = append(s.workers, w)
	}
	return s, nil
}

// Serve answers requests until ctx is cancelled or Close is called; then it
// returns nil. Transfers in progress are aborted.
func (s *TFTPServer) Serve(ctx context.Context) error {
	s.lifeMu.Lock()
	select {
	case <-s.closed:
		s.lifeMu.Unlock()
		return nil // closed before Serve: Close released the workers
	default:
	}
	s.serving = true
	for _, w := range s.workers {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); w.run() }()
	}
	s.lifeMu.Unlock()
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	s.log.Info("tftp serving", zap.Stringer("addr", s.conn.LocalAddr()),
		zap.Int("blksize_max", s.cfg.BlockSizeMax), zap.Duration("timeout", s.cfg.Timeout),
		zap.Int("workers", len(s.workers)))
	err := s.readLoop()
	s.Close()
	s.wg.Wait()
	select {
	case <-s.closed:
		return nil
	default:
		return err
	}
}

// Close stops the server and closes its socket.
func (s *TFTPServer) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.lifeMu.Lock()
		defer s.lifeMu.Unlock()
		close(s.closed)
		err = s.conn.Close()
		if !s.serving {
			s.closeWorkers()
			return
		}
		for _, w := range s.workers {
			w.wake()
		}
	})
	return err
}

func (s *TFTPServer) closeWorkers() {
	for _, w := range s.workers {
		w.closeFDs()
	}
}

// readLoop reads requests from the listening socket. When the socket is
// bound to a wildcard address, the request's destination address is taken
// from IP_PKTINFO so that the transfer answers from the address the client
// talked to.
func (s *TFTPServer) readLoop() error {
	local := localAddrPort(s.conn.LocalAddr())
	var p4 *ipv4.PacketConn
	if local.Addr().IsUnspecified() && local.Addr().Is4() {
		p4 = ipv4.NewPacketConn(s.conn)
		if err := p4.SetControlMessage(ipv4.FlagDst, true); err != nil {
			s.log.Warn("tftp: no IP_PKTINFO; replies leave from the default address", zap.Error(err))
			p4 = nil
		}
	}
	buf := make([]byte, 65536)
	for {
		var (
			n    int
			from net.Addr
			dst  = local.Addr()
			err  error
		)
		if p4 != nil {
			var cm *ipv4.ControlMessage
			n, cm, from, err = p4.ReadFrom(buf)
			if cm != nil && cm.Dst != nil {
				if a, ok := netip.AddrFromSlice(cm.Dst.To4()); ok {
					dst = a
				}
			}
		} else {
			n, from, err = s.conn.ReadFrom(buf)
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("tftp read request: %w", err)
		}
		peer := localAddrPort(from)
		s.handlePacket(append([]byte(nil), buf[:n]...), dst, peer)
	}
}

func localAddrPort(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// handlePacket decides what to do with one packet on the listening port.
func (s *TFTPServer) handlePacket(p []byte, local netip.Addr, peer netip.AddrPort) {
	req, err := parseRequest(p)
	switch {
	case err != nil && len(p) >= 2 && (p[1] == opRRQ || p[1] == opWRQ) && p[0] == 0:
		s.metrics.requests.WithLabelValues(opName(p[1]), "malformed").Inc()
		s.log.Info("tftp: malformed request refused", zap.Stringer("client", peer), zap.Error(err))
		s.refuse(local, peer, tftpRequest{Op: uint16(p[1])}, tftpErrIllegalOp, err.Error(), "malformed", nil)
	case err != nil:
		// Stray ACK/DATA/ERROR on the listening port: answering could
		// start a packet loop, so it is only counted and logged.
		s.metrics.requests.WithLabelValues("other", "ignored").Inc()
		s.log.Debug("tftp: stray packet ignored", zap.Stringer("client", peer), zap.Error(err))
	case req.Op == opWRQ:
		s.metrics.requests.WithLabelValues("wrq", "refused").Inc()
		s.refuse(local, peer, req, tftpErrAccess, "read-only server: write requests are refused", "refused", nil)
	default:
		entry := s.claim(peer, req.Filename)
		if entry == nil {
			s.metrics.requests.WithLabelValues("rrq", "duplicate").Inc()
			s.log.Debug("tftp: retransmitted request ignored; its transfer is running", zap.Stringer("client", peer),
				zap.String("file", req.Filename))
			return
		}
		go s.startRead(req, local, peer, entry)
	}
}

type activeKey struct {
	peer netip.AddrPort
	file string
}

type activeEntry struct{ answered atomic.Bool }

// claim registers a transfer of file to peer; nil when the request is a
// retransmission of one whose client has not answered yet.
func (s *TFTPServer) claim(peer netip.AddrPort, file string) *activeEntry {
	s.activeMu.Lock()
	defer s.activeMu.Unlock()
	k := activeKey{peer, file}
	if e := s.active[k]; e != nil && !e.answered.Load() {
		return nil
	}
	e := &activeEntry{}
	s.active[k] = e
	return e
}

func (s *TFTPServer) release(peer netip.AddrPort, file string, e *activeEntry) {
	s.activeMu.Lock()
	k := activeKey{peer, file}
	if s.active[k] == e {
		delete(s.active, k)
	}
	s.activeMu.Unlock()
}

func opName(op byte) string {
	if op == opWRQ {
		return "wrq"
	}
	return "rrq"
}

// startRead resolves the file and starts the transfer.
func (s *TFTPServer) startRead(req tftpRequest, local netip.Addr, peer netip.AddrPort, entry *activeEntry) {
	started := false
	defer func() {
		if !started {
			s.release(peer, req.Filename, entry)
		}
	}()
	start := s.clk.Now()
	art, err := s.files.Open(Request{Path: req.Filename, Client: peer.Addr()})
	if err != nil {
		code, result := uint16(tftpErrAccess), "refused"
		if errors.Is(err, ErrNotFound) {
			code, result = tftpErrNotFound, "not-found"
		}
		s.metrics.requests.WithLabelValues("rrq", result).Inc()
		s.refuse(local, peer, req, code, publicMessage(err), result, err)
		return
	}
	data, err := transferBytes(art, req.Mode)
	if err != nil {
		art.Close()
		s.metrics.requests.WithLabelValues("rrq", "failed").Inc()
		s.refuse(local, peer, req, tftpErrUndefined, "cannot read file", "failed", err)
		return
	}
	size := art.Size
	if data != nil {
		size = int64(len(data))
	}
	neg := negotiate(req, s.cfg.BlockSizeMax, size)
	fd, err := openTransferSocket(local, peer)
	if err != nil {
		art.Close()
		s.metrics.requests.WithLabelValues("rrq", "failed").Inc()
		s.log.Error("tftp: cannot open transfer socket", zap.Stringer("client", peer), zap.Error(err))
		return
	}
	s.metrics.requests.WithLabelValues("rrq", "started").Inc()
	t := &transfer{fd: fd, srv: s, peer: peer, entry: entry, req: req, art: art, data: data, size: size,
		blksize: neg.blksize, start: start, hostName: HostName(art.Host, peer.Addr()),
		pkt: make([]byte, 4+neg.blksize)}
	started = true // released by the transfer's finish
	w := s.workers[s.pickWorker()]
	w.add(t, neg.oack)
}

func (s *TFTPServer) pickWorker() int {
	return int(s.next.Add(1) % uint32(len(s.workers)))
}

// transferBytes returns the content to send when it is in memory (always
// for netascii, converted), or nil to read from the open file.
func transferBytes(art *Artifact, mode string) ([]byte, error) {
	data, inMemory := art.Bytes()
	if mode != "netascii" {
		if inMemory {
			return data, nil
		}
		return nil, nil
	}
	if !inMemory {
		buf := make([]byte, art.Size)
		if _, err := art.ReaderAt().ReadAt(buf, 0); err != nil {
			return nil, fmt.Errorf("read %s for netascii: %w", art.Name, err)
		}
		data = buf
	}
	return toNetascii(data), nil
}

// publicMessage is the TFTP error text for a resolution error: the
// sentinel only, never server paths.
func publicMessage(err error) string {
	switch {
	case errors.Is(err, ErrNotFound):
		return "file not found"
	case errors.Is(err, ErrForbidden):
		return "access violation"
	}
	return "error"
}

// refuse answers a request with a TFTP error from a fresh socket (a new
// TID, like a transfer would use) and records the decision.
func (s *TFTPServer) refuse(local netip.Addr, peer netip.AddrPort, req tftpRequest, code uint16, msg, result string, cause error) {
	host := s.files.Identify(Request{Path: req.Filename, Client: peer.Addr()})
	name := HostName(host, peer.Addr())
	if err := sendOnce(local, peer, errorPacket(code, msg)); err != nil {
		s.log.Warn("tftp: cannot send error", zap.Stringer("client", peer), zap.Error(err))
	}
	s.metrics.Transfers.WithLabelValues("tftp", result).Inc()
	fields := []zap.Field{zap.String("host", name), zap.Stringer("client", peer),
		zap.String("file", req.Filename), zap.String("result", result), zap.String("reply", msg)}
	if cause != nil {
		fields = append(fields, zap.NamedError("reason", cause))
	}
	s.log.Info("tftp request refused", fields...)
	role := ClassifyRole(req.Filename, nil)
	attrs := map[string]string{"proto": "tftp", "file": req.Filename, "outcome": result,
		"role": string(role), "client": peer.String(), "tftp_error": strconv.Itoa(int(code))}
	if req.Op == opWRQ {
		attrs["op"] = "write"
	}
	message := "tftp " + result + ": " + msg
	if cause != nil {
		message = "tftp " + result + ": " + cause.Error()
	}
	s.sink.Emit(event.Event{Time: s.clk.Now(), Host: name, Kind: event.FileFailed,
		Message: message, Attrs: attrs})
}
