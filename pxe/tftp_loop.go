package pxe

// Event loops of the TFTP server. Each worker owns an epoll instance and
// the transfer sockets assigned to it; a readable socket yields one ACK or
// ERROR and, for an ACK of the current block, one DATA packet copied from
// the cached file contents. The hot path makes two system calls per block
// (read, write; epoll_wait is amortised over all ready sockets) and
// allocates nothing. Retransmits are driven by a sweep every 100 ms that
// resends a block only after the full retransmit timeout (never on a
// duplicate ACK: that is the Sorcerer's Apprentice bug, and the Raspberry
// Pi's start4.elf hangs on duplicate DATA).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"netboot/internal/event"
)

const sweepInterval = 100 * time.Millisecond

// worker is one event loop.
type worker struct {
	srv    *TFTPServer
	epfd   int
	evfd   int
	mu     sync.Mutex
	byFD   map[int32]*transfer
	closed bool

	rbuf      []byte
	events    []unix.EpollEvent
	lastSweep time.Time
}

func newWorker(s *TFTPServer) (*worker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	w := &worker{srv: s, epfd: epfd, evfd: evfd, byFD: map[int32]*transfer{},
		rbuf: make([]byte, 2048), events: make([]unix.EpollEvent, 256)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd)}); err != nil {
		w.closeFDs()
		return nil, fmt.Errorf("epoll_ctl eventfd: %w", err)
	}
	return w, nil
}

func (w *worker) closeFDs() {
	unix.Close(w.evfd)
	unix.Close(w.epfd)
}

// wake interrupts epoll_wait (used by Close).
func (w *worker) wake() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(w.evfd, one[:])
}

// add sends the transfer's first packet (OACK, or DATA 1) and hands the
// transfer to the loop.
func (w *worker) add(t *transfer, oack []byte) {
	t.w = w
	now := w.srv.clk.Now()
	if oack != nil {
		t.cur = append(t.pkt[:0:0], oack...)
		t.send(now)
	} else {
		t.sendBlock(now, 1)
	}
	if t.finished {
		return
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		t.finish(now, "aborted", "server shutting down")
		return
	}
	w.byFD[int32(t.fd)] = t
	w.mu.Unlock()
	w.srv.metrics.active.Inc()
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, t.fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(t.fd)}); err != nil {
		t.finish(now, "failed", "epoll_ctl: "+err.Error())
	}
}

func (w *worker) lookup(fd int32) *transfer {
	w.mu.Lock()
	t := w.byFD[fd]
	w.mu.Unlock()
	return t
}

func (w *worker) remove(t *transfer) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.byFD[int32(t.fd)] != t {
		return false
	}
	delete(w.byFD, int32(t.fd))
	return true
}

// run is the event loop; it returns when the server is closed.
func (w *worker) run() {
	defer w.closeFDs()
	w.lastSweep = w.srv.clk.Now()
	for {
		n, err := unix.EpollWait(w.epfd, w.events, int(sweepInterval/time.Millisecond))
		if err != nil && !errors.Is(err, unix.EINTR) {
			w.srv.log.Error("tftp: epoll_wait failed; worker stops", zap.Error(err))
			w.shutdown()
			return
		}
		now := w.srv.clk.Now()
		for i := 0; i < n; i++ {
			fd := w.events[i].Fd
			if int(fd) == w.evfd {
				continue
			}
			if t := w.lookup(fd); t != nil {
				t.onReadable(now)
			}
		}
		select {
		case <-w.srv.closed:
			w.shutdown()
			return
		default:
		}
		if now.Sub(w.lastSweep) >= sweepInterval {
			w.lastSweep = now
			w.sweep(now)
		}
	}
}

// sweep retransmits blocks whose ACK is overdue and gives up transfers
// that used all their retries.
func (w *worker) sweep(now time.Time) {
	var due []*transfer
	w.mu.Lock()
	for _, t := range w.byFD {
		if now.Sub(t.lastSend) >= w.srv.cfg.Timeout {
			due = append(due, t)
		}
	}
	w.mu.Unlock()
	for _, t := range due {
		if t.retries >= w.srv.cfg.Retries {
			t.finish(now, "timeout", fmt.Sprintf("no answer after %d retransmits of %s", t.retries, t.lastWhat()))
			continue
		}
		t.retries++
		w.srv.metrics.retransmits.Inc()
		t.send(now)
	}
}

func (w *worker) shutdown() {
	w.mu.Lock()
	w.closed = true
	all := make([]*transfer, 0, len(w.byFD))
	for _, t := range w.byFD {
		all = append(all, t)
	}
	w.mu.Unlock()
	now := w.srv.clk.Now()
	for _, t := range all {
		t.finish(now, "aborted", "server shutting down")
	}
}

// transfer is one read transfer in progress.
type transfer struct {
	w        *worker
	srv      *TFTPServer
	fd       int
	peer     netip.AddrPort
	entry    *activeEntry // answered once the client acknowledged something
	req      tftpRequest
	art      *Artifact
	data     []byte // content in memory, or nil: read from art's file
	size     int64
	blksize  int
	hostName string
	start    time.Time

	pkt       []byte // DATA buffer, 4+blksize
	cur       []byte // the last packet sent (OACK or DATA), resent on timeout
	blockIdx  int64  // absolute index of the DATA block in cur; 0 = OACK
	lastBlock bool   // cur is the final (short) DATA block
	sent      int64  // content bytes sent so far
	lastSend  time.Time
	retries   int
	finished  bool
}

// onReadable handles one packet from the client.
func (t *transfer) onReadable(now time.Time) {
	n, err := unix.Read(t.fd, t.w.rbuf)
	if err != nil {
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			return
		}
		t.finish(now, "client-error", "client unreachable: "+err.Error())
		return
	}
	p, err := parseClientPacket(t.w.rbuf[:n])
	if err != nil {
		t.srv.log.Debug("tftp: bad packet ignored", zap.Stringer("client", t.peer), zap.Error(err))
		return
	}
	if p.Op == opERROR {
		if isEarlyTerminate(p) {
			t.finish(now, "early-terminate", "client ended the transfer early (probe)")
		} else {
			t.finish(now, "client-error", fmt.Sprintf("client sent error %d %q", p.Code, p.Msg))
		}
		return
	}
	// An ACK of anything but the block in flight is a duplicate or late
	// ACK: ignore it, never answer it with a retransmit.
	if p.Block != uint16(t.blockIdx) {
		return
	}
	if t.blockIdx <= 1 {
		t.entry.answered.Store(true)
	}
	if t.lastBlock {
		t.finish(now, "ok", "")
		return
	}
	t.sendBlock(now, t.blockIdx+1)
}

// sendBlock builds DATA block idx (1-based) and sends it.
func (t *transfer) sendBlock(now time.Time, idx int64) {
	off := (idx - 1) * int64(t.blksize)
	end := min(off+int64(t.blksize), t.size)
	n := int(max(end-off, 0))
	binary.BigEndian.PutUint16(t.pkt[0:], opDATA)
	binary.BigEndian.PutUint16(t.pkt[2:], uint16(idx))
	if t.data != nil {
		copy(t.pkt[4:4+n], t.data[off:off+int64(n)])
	} else if n > 0 {
		if _, err := t.art.ReaderAt().ReadAt(t.pkt[4:4+n], off); err != nil {
			t.finish(now, "failed", "read file: "+err.Error())
			return
		}
	}
	t.cur = t.pkt[:4+n]
	t.blockIdx = idx
	t.lastBlock = n < t.blksize
	t.sent = off + int64(n)
	t.retries = 0
	t.send(now)
}

// send (re)sends cur.
func (t *transfer) send(now time.Time) {
	t.lastSend = now
	if _, err := unix.Write(t.fd, t.cur); err != nil {
		switch {
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.ENOBUFS), errors.Is(err, unix.EINTR):
			// Left to the retransmit timer.
		case errors.Is(err, unix.ECONNREFUSED):
			t.finish(now, "client-error", "client port unreachable")
		default:
			t.finish(now, "failed", "send: "+err.Error())
		}
	}
}

func (t *transfer) lastWhat() string {
	if t.blockIdx == 0 {
		return "OACK"
	}
	return "DATA " + strconv.FormatInt(t.blockIdx, 10)
}

// finish ends the transfer once: closes its socket, counts and records it.
func (t *transfer) finish(now time.Time, result, why string) {
	if t.finished {
		return
	}
	t.finished = true
	if t.w != nil && t.w.remove(t) {
		unix.EpollCtl(t.w.epfd, unix.EPOLL_CTL_DEL, t.fd, nil)
		t.srv.metrics.active.Dec()
	}
	unix.Close(t.fd)
	t.art.Close()
	t.srv.release(t.peer, t.req.Filename, t.entry)
	t.srv.recordTransfer(t, now, result, why)
}

// recordTransfer turns a finished transfer into a metric, a log line and
// an event on the host's boot timeline.
func (s *TFTPServer) recordTransfer(t *transfer, now time.Time, result, why string) {
	dur := now.Sub(t.start)
	s.metrics.Transfers.WithLabelValues("tftp", result).Inc()
	s.metrics.Bytes.WithLabelValues("tftp").Add(float64(t.sent))
	attrs := map[string]string{
		"proto": "tftp", "file": t.req.Filename, "path": t.art.Name, "role": string(t.art.Role),
		"bytes": strconv.FormatInt(t.sent, 10), "size": strconv.FormatInt(t.size, 10),
		"duration_ms": strconv.FormatInt(dur.Milliseconds(), 10), "outcome": result,
		"blksize": strconv.Itoa(t.blksize), "client": t.peer.String(),
	}
	ev := event.Event{Time: now, Host: t.hostName, Kind: event.FileFetched, Attrs: attrs}
	switch result {
	case "ok":
		ev.Stage = t.art.Role.Stage()
		ev.Message = fmt.Sprintf("tftp %s (%d bytes)", t.req.Filename, t.sent)
	case "early-terminate":
		// The Pi's probe: normal, but proves no stage.
		ev.Message = fmt.Sprintf("tftp %s: probe ended by the client (early terminate)", t.req.Filename)
	default:
		ev.Kind, ev.Failed, ev.Stage = event.FileFailed, true, t.art.Role.Stage()
		ev.Message = fmt.Sprintf("tftp %s %s: %s", t.req.Filename, result, why)
		// Firmware retries a broken transfer (the Pi after 5 s, PXE ROMs
		// by restarting): the failure is on the timeline, and the stage
		// deadline decides if the boot is stuck, naming this transfer.
		attrs["transient"] = "true"
	}
	level := zap.InfoLevel
	if ev.Failed {
		level = zap.WarnLevel
	}
	s.log.Log(level, "tftp transfer", zap.String("host", t.hostName), zap.Stringer("client", t.peer),
		zap.String("file", t.req.Filename), zap.String("path", t.art.Name), zap.String("role", string(t.art.Role)),
		zap.String("result", result), zap.Int64("bytes", t.sent), zap.Duration("duration", dur),
		zap.Int("blksize", t.blksize), zap.String("reason", why))
	s.sink.Emit(ev)
}

// openTransferSocket opens a non-blocking UDP socket bound to local (any
// port: the transfer's TID) and connected to peer.
func openTransferSocket(local netip.Addr, peer netip.AddrPort) (int, error) {
	family := unix.AF_INET
	if peer.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if err := unix.Bind(fd, sockaddr(local, 0, family)); err != nil {
		// A request sent to a broadcast address: answer from the address
		// the kernel picks for the route to the client.
		if err := unix.Bind(fd, sockaddr(netip.Addr{}, 0, family)); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("bind %s: %w", local, err)
		}
	}
	if err := unix.Connect(fd, sockaddr(peer.Addr(), peer.Port(), family)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect %s: %w", peer, err)
	}
	return fd, nil
}

func sockaddr(a netip.Addr, port uint16, family int) unix.Sockaddr {
	if family == unix.AF_INET6 {
		sa := &unix.SockaddrInet6{Port: int(port)}
		if a.Is6() {
			sa.Addr = a.As16()
		}
		return sa
	}
	sa := &unix.SockaddrInet4{Port: int(port)}
	if a.Is4() {
		sa.Addr = a.As4()
	}
	return sa
}

// sendOnce sends one packet to peer from a fresh socket.
func sendOnce(local netip.Addr, peer netip.AddrPort, pkt []byte) error {
	fd, err := openTransferSocket(local, peer)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, pkt); err != nil {
		return fmt.Errorf("send to %s: %w", peer, err)
	}
	return nil
}
