package pxe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// TFTP opcodes (RFC 1350, RFC 2347).
const (
	opRRQ   = 1
	opWRQ   = 2
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

// TFTP error codes (RFC 1350).
const (
	tftpErrUndefined     = 0
	tftpErrNotFound      = 1
	tftpErrAccess        = 2
	tftpErrIllegalOp     = 4
	tftpErrUnknownID     = 5
	tftpErrOptionRefused = 8
)

// Limits of the options this server acknowledges.
const (
	minBlockSize     = 8     // RFC 2348
	maxBlockSize     = 65464 // RFC 2348
	defaultBlockSize = 512
)

var errMalformed = errors.New("malformed TFTP packet")

// tftpRequest is a parsed RRQ or WRQ.
type tftpRequest struct {
	Op       uint16
	Filename string
	Mode     string            // lower-cased: "octet" or "netascii"
	Options  map[string]string // lower-cased names, in the order seen in Order
	Order    []string
}

// parseRequest parses an RRQ/WRQ: opcode, filename NUL, mode NUL, then
// option name NUL value NUL pairs (RFC 2347). A trailing lone name is
// ignored; names are case-insensitive.
func parseRequest(p []byte) (tftpRequest, error) {
	var r tftpRequest
	if len(p) < 4 {
		return r, fmt.Errorf("parse request: %d bytes: %w", len(p), errMalformed)
	}
	r.Op = binary.BigEndian.Uint16(p)
	if r.Op != opRRQ && r.Op != opWRQ {
		return r, fmt.Errorf("parse request: opcode %d is not RRQ/WRQ: %w", r.Op, errMalformed)
	}
	body := p[2:]
	if body[len(body)-1] != 0 {
		return r, fmt.Errorf("parse request: not NUL-terminated: %w", errMalformed)
	}
	fields := bytes.Split(body[:len(body)-1], []byte{0})
	if len(fields) < 2 || len(fields[0]) == 0 {
		return r, fmt.Errorf("parse request: missing filename or mode: %w", errMalformed)
	}
	r.Filename = string(fields[0])
	r.Mode = strings.ToLower(string(fields[1]))
	switch r.Mode {
	case "octet", "netascii":
	default:
		return r, fmt.Errorf("parse request: transfer mode %q not supported: %w", r.Mode, errMalformed)
	}
	for i := 2; i+1 < len(fields); i += 2 {
		name := strings.ToLower(string(fields[i]))
		if name == "" {
			continue
		}
		if r.Options == nil {
			r.Options = map[string]string{}
		}
		if _, dup := r.Options[name]; !dup {
			r.Order = append(r.Order, name)
		}
		r.Options[name] = string(fields[i+1])
	}
	return r, nil
}

// negotiated is what the server acknowledges of a request's options.
type negotiated struct {
	blksize int
	tsize   bool
	oack    []byte // the OACK packet, nil when no option was acknowledged
}

// negotiate picks the options to acknowledge: blksize (capped to maxBlk)
// and tsize (answered with size); others (windowsize, timeout…) are not
// acknowledged, which RFC 2347 allows.
func negotiate(r tftpRequest, maxBlk int, size int64) negotiated {
	n := negotiated{blksize: defaultBlockSize}
	var acked [][2]string
	for _, name := range r.Order {
		val := r.Options[name]
		switch name {
		case "blksize":
			b, err := strconv.Atoi(val)
			if err != nil || b < minBlockSize {
				continue
			}
			n.blksize = min(b, maxBlk, maxBlockSize)
			acked = append(acked, [2]string{"blksize", strconv.Itoa(n.blksize)})
		case "tsize":
			n.tsize = true
			acked = append(acked, [2]string{"tsize", strconv.FormatInt(size, 10)})
		}
	}
	if len(acked) > 0 {
		n.oack = oackPacket(acked)
	}
	return n
}

func oackPacket(opts [][2]string) []byte {
	b := []byte{0, opOACK}
	for _, o := range opts {
		b = append(b, o[0]...)
		b = append(b, 0)
		b = append(b, o[1]...)
		b = append(b, 0)
	}
	return b
}

// errorPacket builds an ERROR packet.
func errorPacket(code uint16, msg string) []byte {
	b := make([]byte, 4, 5+len(msg))
	binary.BigEndian.PutUint16(b, opERROR)
	binary.BigEndian.PutUint16(b[2:], code)
	b = append(b, msg...)
	return append(b, 0)
}

// clientPacket is an ACK or ERROR received on a transfer socket.
type clientPacket struct {
	Op    uint16
	Block uint16 // ACK
	Code  uint16 // ERROR
	Msg   string // ERROR
}

// parseClientPacket parses what a reading client sends during a transfer.
func parseClientPacket(p []byte) (clientPacket, error) {
	var c clientPacket
	if len(p) < 4 {
		return c, fmt.Errorf("parse packet: %d bytes: %w", len(p), errMalformed)
	}
	c.Op = binary.BigEndian.Uint16(p)
	switch c.Op {
	case opACK:
		c.Block = binary.BigEndian.Uint16(p[2:])
	case opERROR:
		c.Code = binary.BigEndian.Uint16(p[2:])
		msg := p[4:]
		if i := bytes.IndexByte(msg, 0); i >= 0 {
			msg = msg[:i]
		}
		c.Msg = strings.ToValidUTF8(string(msg), "?")
	default:
		return c, fmt.Errorf("parse packet: unexpected opcode %d: %w", c.Op, errMalformed)
	}
	return c, nil
}

// isEarlyTerminate reports whether an ERROR from the client is the
// Raspberry Pi bootloader's normal abort after a probe, or error 8 (RFC
// 2347: ended after option negotiation), which UEFI (EDK2) sends after its
// tsize probe of every boot file.
func isEarlyTerminate(c clientPacket) bool {
	return c.Op == opERROR && (c.Code == 8 || c.Code == tftpErrUndefined && strings.EqualFold(strings.TrimSpace(c.Msg), "early terminate"))
}

// toNetascii converts to netascii: LF → CR LF, CR → CR NUL.
func toNetascii(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/16)
	for _, c := range b {
		switch c {
		case '\n':
			out = append(out, '\r', '\n')
		case '\r':
			out = append(out, '\r', 0)
		default:
			out = append(out, c)
		}
	}
	return out
}
