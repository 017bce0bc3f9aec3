// Package bench is the TFTP load generator behind `make bench`
// (test/tftpbench): it starts our server, bare pin/tftp, tftp-hpa and
// dnsmasq side by side on loopback, drives them with many lock-step
// clients and with a Raspberry Pi boot storm, and prints a table with
// ratios against the peers measured in the same run.
package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// ClientConfig is how a simulated client behaves on the wire.
type ClientConfig struct {
	BlockSize int
	// Timeout of silence before the client resends its last packet.
	// Default 1s (like the Pi bootloader and tftp-hpa).
	Timeout time.Duration
	// Retries before the transfer fails. Default 5.
	Retries int
}

func (c ClientConfig) withDefaults() ClientConfig {
	if c.BlockSize == 0 {
		c.BlockSize = 512
	}
	if c.Timeout == 0 {
		c.Timeout = time.Second
	}
	if c.Retries == 0 {
		c.Retries = 5
	}
	return c
}

// Transfer is the result of one fetch.
type Transfer struct {
	File     string
	Bytes    int64
	Duration time.Duration
	Resends  int
	Err      error
}

// conn is one client socket locked onto the server's transfer ID.
type conn struct {
	c        *net.UDPConn
	server   netip.AddrPort
	tid      netip.AddrPort
	cfg      ClientConfig
	buf      []byte
	last     []byte // last packet sent, resent on timeout
	deadline time.Time
	resends  int
}

func dial(server netip.AddrPort, cfg ClientConfig) (*conn, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("client socket: %w", err)
	}
	return &conn{c: c, server: server, cfg: cfg, buf: make([]byte, 65536+4)}, nil
}

func (c *conn) close() { c.c.Close() }

func (c *conn) sendTo(p []byte, to netip.AddrPort) error {
	c.last = append(c.last[:0], p...)
	_, err := c.c.WriteToUDPAddrPort(p, to)
	return err
}

func (c *conn) dest() netip.AddrPort {
	if c.tid.IsValid() {
		return c.tid
	}
	return c.server
}

// recv waits for the next packet from the server's TID, resending the last
// packet after each Timeout of silence. The read deadline is refreshed at
// most every quarter timeout to keep the client cheap.
func (c *conn) recv() ([]byte, error) {
	silent := 0
	for {
		now := time.Now()
		if c.deadline.Sub(now) < c.cfg.Timeout*3/4 {
			c.deadline = now.Add(c.cfg.Timeout)
			c.c.SetReadDeadline(c.deadline)
		}
		n, from, err := c.c.ReadFromUDPAddrPort(c.buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				silent++
				if silent > c.cfg.Retries {
					return nil, fmt.Errorf("timeout after %d resends", c.cfg.Retries)
				}
				c.resends++
				c.deadline = time.Time{}
				if _, err := c.c.WriteToUDPAddrPort(c.last, c.dest()); err != nil {
					return nil, fmt.Errorf("resend: %w", err)
				}
				continue
			}
			return nil, err
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if !c.tid.IsValid() {
			if from.Addr() != c.server.Addr() {
				continue
			}
			c.tid = from
		} else if from != c.tid {
			continue // stray packet from an older transfer
		}
		return c.buf[:n], nil
	}
}

func rrq(file string, blksize int) []byte {
	b := []byte{0, 1}
	for _, s := range []string{file, "octet", "tsize", "0", "blksize", strconv.Itoa(blksize)} {
		b = append(append(b, s...), 0)
	}
	return b
}

func ackPacket(dst []byte, block uint16) []byte {
	return append(dst[:0], 0, 4, byte(block>>8), byte(block))
}

// oackTsize returns the tsize in an OACK (or -1).
func oackTsize(p []byte) int64 {
	f := strings.Split(strings.TrimSuffix(string(p[2:]), "\x00"), "\x00")
	for i := 0; i+1 < len(f); i += 2 {
		if strings.EqualFold(f[i], "tsize") {
			n, err := strconv.ParseInt(f[i+1], 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

func errorText(p []byte) string {
	if len(p) < 4 {
		return "short error"
	}
	return fmt.Sprintf("server error %d %q", binary.BigEndian.Uint16(p[2:]), strings.TrimRight(string(p[4:]), "\x00"))
}

// Fetch reads file completely, lock-step (window 1), and checks the byte
// count against the tsize the server announced.
func Fetch(server netip.AddrPort, file string, cfg ClientConfig) Transfer {
	cfg = cfg.withDefaults()
	start := time.Now()
	t := Transfer{File: file}
	c, err := dial(server, cfg)
	if err != nil {
		t.Err = err
		return t
	}
	defer c.close()
	t.Bytes, t.Err = c.fetch(file)
	t.Duration, t.Resends = time.Since(start), c.resends
	return t
}

func (c *conn) fetch(file string) (int64, error) {
	if err := c.sendTo(rrq(file, c.cfg.BlockSize), c.server); err != nil {
		return 0, fmt.Errorf("send RRQ: %w", err)
	}
	var (
		got, tsize = int64(0), int64(-1)
		next       = uint16(1)
		ackBuf     = make([]byte, 4)
	)
	for {
		p, err := c.recv()
		if err != nil {
			return got, fmt.Errorf("%s: %w after %d bytes", file, err, got)
		}
		if len(p) < 4 {
			continue
		}
		switch binary.BigEndian.Uint16(p) {
		case 6: // OACK
			if next != 1 || got != 0 {
				continue
			}
			tsize = oackTsize(p)
			c.sendTo(ackPacket(ackBuf, 0), c.tid)
		case 3: // DATA
			blk := binary.BigEndian.Uint16(p[2:])
			if blk != next {
				if blk == next-1 {
					c.sendTo(ackPacket(ackBuf, blk), c.tid) // re-ACK a duplicate
				}
				continue
			}
			n := len(p) - 4
			got += int64(n)
			next++
			c.sendTo(ackPacket(ackBuf, blk), c.tid)
			if n < c.cfg.BlockSize {
				if tsize >= 0 && got != tsize {
					return got, fmt.Errorf("%s: short read %d of tsize %d", file, got, tsize)
				}
				return got, nil
			}
		case 5:
			return got, fmt.Errorf("%s: %s", file, errorText(p))
		}
	}
}

// Probe is the Raspberry Pi's probe: request the file, acknowledge the
// OACK, take the first DATA block and end with ERROR 0 "Early terminate".
func Probe(server netip.AddrPort, file string, cfg ClientConfig) Transfer {
	cfg = cfg.withDefaults()
	start := time.Now()
	t := Transfer{File: file}
	c, err := dial(server, cfg)
	if err != nil {
		t.Err = err
		return t
	}
	defer c.close()
	t.Err = c.probe(file)
	t.Duration, t.Resends = time.Since(start), c.resends
	return t
}

func (c *conn) probe(file string) error {
	if err := c.sendTo(rrq(file, c.cfg.BlockSize), c.server); err != nil {
		return fmt.Errorf("send RRQ: %w", err)
	}
	for {
		p, err := c.recv()
		if err != nil {
			return fmt.Errorf("probe %s: %w", file, err)
		}
		switch binary.BigEndian.Uint16(p) {
		case 6:
			c.sendTo(ackPacket(make([]byte, 4), 0), c.tid)
		case 3:
			early := append([]byte{0, 5, 0, 0}, "Early terminate\x00"...)
			_, err := c.c.WriteToUDPAddrPort(early, c.tid)
			return err
		case 5:
			return fmt.Errorf("probe %s: %s", file, errorText(p))
		}
	}
}
