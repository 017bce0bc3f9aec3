//go:build linux

package netconsole

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchReader reads up to len(hdrs) datagrams per recvmmsg(2) call into
// preallocated buffers: no allocation per datagram. It also asks the kernel
// for SO_RXQ_OVFL, the socket's cumulative receive-buffer drop counter.
type batchReader struct {
	rc    syscall.RawConn
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []byte // sizeofName per message
	bufs  []byte // bufSize per message
	oobs  []byte // oobSize per message
	// drops is the socket's cumulative drop count already reported; the
	// reader (SO_RXQ_OVFL) and the final SO_MEMINFO read both advance it.
	drops atomic.Uint32
}

const (
	sizeofName = unix.SizeofSockaddrInet6
	bufSize    = 2048 // > MaxDatagram and the 1460 B skb pool of netconsole
	oobSize    = 32   // one cmsg carrying a uint32 (CmsgSpace(4) = 24)
)

// newBatchReader prepares batched reads on c; ok is false when c is not a
// UDP socket (the caller then falls back to ReadFrom).
func newBatchReader(c net.PacketConn, batch int) (*batchReader, bool, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, false, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, false, fmt.Errorf("batched reads: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1)
	}); err != nil {
		return nil, false, fmt.Errorf("batched reads: %w", err)
	}
	if serr != nil {
		return nil, false, fmt.Errorf("enable SO_RXQ_OVFL: %w", serr)
	}
	r := &batchReader{
		rc: rc, hdrs: make([]unix.Mmsghdr, batch), iovs: make([]unix.Iovec, batch),
		names: make([]byte, batch*sizeofName), bufs: make([]byte, batch*bufSize), oobs: make([]byte, batch*oobSize),
	}
	for i := range r.hdrs {
		r.iovs[i].Base = &r.bufs[i*bufSize]
		r.iovs[i].SetLen(bufSize)
		h := &r.hdrs[i].Hdr
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
		h.Name = &r.names[i*sizeofName]
		h.Control = &r.oobs[i*oobSize]
	}
	return r, true, nil
}

// errClosed is returned by read once the socket is closed.
var errClosed = errors.New("socket closed")

// read blocks until at least one datagram is there and returns how many
// were read; payload(i) and source(i) then describe each.
func (r *batchReader) read() (int, error) {
	for i := range r.hdrs {
		r.hdrs[i].Hdr.Namelen = sizeofName
		r.hdrs[i].Hdr.SetControllen(oobSize)
		r.hdrs[i].Len = 0
	}
	var n int
	var errno syscall.Errno
	err := r.rc.Read(func(fd uintptr) bool {
		n0, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(len(r.hdrs)), 0, 0, 0)
		if e == unix.EAGAIN || e == unix.EINTR {
			return false
		}
		n, errno = int(n0), e
		return true
	})
	if err != nil {
		return 0, errClosed
	}
	if errno != 0 {
		return 0, fmt.Errorf("recvmmsg: %w", errno)
	}
	return n, nil
}

func (r *batchReader) payload(i int) []byte {
	n := min(int(r.hdrs[i].Len), bufSize)
	return r.bufs[i*bufSize : i*bufSize+n]
}

// source decodes message i's sockaddr (IPv4 or IPv6) without allocating.
func (r *batchReader) source(i int) netip.Addr {
	b := r.names[i*sizeofName : (i+1)*sizeofName]
	switch *(*uint16)(unsafe.Pointer(&b[0])) {
	case unix.AF_INET:
		return netip.AddrFrom4([4]byte(b[4:8]))
	case unix.AF_INET6:
		return netip.AddrFrom16([16]byte(b[8:24])).Unmap()
	}
	return netip.Addr{}
}

// newDrops returns how many datagrams the kernel dropped on this socket
// since the previous call, from the newest SO_RXQ_OVFL control message of
// the last batch (n messages).
func (r *batchReader) newDrops(n int) uint32 {
	for i := n - 1; i >= 0; i-- {
		cl := int(r.hdrs[i].Hdr.Controllen)
		if cl < unix.CmsgSpace(4) {
			continue
		}
		oob := r.oobs[i*oobSize : i*oobSize+min(cl, oobSize)]
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if h.Level != unix.SOL_SOCKET || h.Type != unix.SO_RXQ_OVFL {
			continue
		}
		return r.advance(binary.NativeEndian.Uint32(oob[unix.CmsgLen(0):]))
	}
	return 0
}

// advance moves the reported drop count to v and returns the increase.
func (r *batchReader) advance(v uint32) uint32 {
	for {
		cur := r.drops.Load()
		if int32(v-cur) <= 0 {
			return 0
		}
		if r.drops.CompareAndSwap(cur, v) {
			return v - cur
		}
	}
}

// finalDrops reads the socket's drop counter with SO_MEMINFO (drops after
// the last datagram read carry no SO_RXQ_OVFL message) and returns the
// part not reported yet. Call it before closing the socket.
func (r *batchReader) finalDrops() uint32 {
	var v uint32
	r.rc.Control(func(fd uintptr) {
		var mem [unix.SK_MEMINFO_VARS]uint32
		l := uint32(unsafe.Sizeof(mem))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&l)), 0)
		if e == 0 {
			v = mem[unix.SK_MEMINFO_DROPS]
		}
	})
	return r.advance(v)
}

// setRcvBuf sets the socket receive buffer to n bytes, with
// SO_RCVBUFFORCE when permitted (root) so that net.core.rmem_max does not
// cap it. It returns the size the kernel reports (twice the request, as
// the kernel doubles it for bookkeeping).
func setRcvBuf(c net.PacketConn, n int) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("set receive buffer: %w", err)
	}
	var got int
	var serr error
	err = rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n) != nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, n)
		}
		got, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return got, fmt.Errorf("set receive buffer to %d: %w", n, err)
	}
	return got, nil
}

// reusePortControl sets SO_REUSEPORT (and SO_REUSEADDR) before bind, so
// that several sockets share one address and the kernel spreads sources
// over them by 4-tuple hash.
func reusePortControl(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}
