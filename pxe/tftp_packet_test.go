package pxe

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name    string
		pkt     []byte
		wantErr bool
		file    string
		opts    map[string]string
	}{
		{"plain", tftpRRQ(opRRQ, "a/b", "octet"), false, "a/b", nil},
		{"options case-insensitive", tftpRRQ(opRRQ, "f", "OCTET", "TSize", "0", "BlkSize", "1024"), false, "f", map[string]string{"tsize": "0", "blksize": "1024"}},
		{"lone trailing option name ignored", tftpRRQ(opRRQ, "f", "netascii", "tsize"), false, "f", nil},
		{"write request", tftpRRQ(opWRQ, "f", "octet"), false, "f", nil},
		{"not NUL-terminated", []byte("\x00\x01f\x00octet"), true, "", nil},
		{"empty name", tftpRRQ(opRRQ, "", "octet"), true, "", nil},
		{"no mode", []byte("\x00\x01f\x00"), true, "", nil},
		{"mail mode", tftpRRQ(opRRQ, "f", "mail"), true, "", nil},
		{"ack opcode", []byte{0, 4, 0, 1}, true, "", nil},
		{"short", []byte{0, 1}, true, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := parseRequest(tc.pkt)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if r.Filename != tc.file || len(r.Options) != len(tc.opts) {
				t.Fatalf("got %+v", r)
			}
			for k, v := range tc.opts {
				if r.Options[k] != v {
					t.Fatalf("option %s = %q, want %q", k, r.Options[k], v)
				}
			}
		})
	}
}

func TestNegotiate(t *testing.T) {
	tests := []struct {
		name    string
		opts    []string
		max     int
		blksize int
		oack    string
	}{
		{"none", nil, 1468, 512, ""},
		{"tsize", []string{"tsize", "0"}, 1468, 512, "tsize\x00123\x00"},
		{"blksize capped", []string{"blksize", "65464"}, 1468, 1468, "blksize\x001468\x00"},
		{"blksize too small ignored", []string{"blksize", "7"}, 1468, 512, ""},
		{"blksize garbage ignored", []string{"blksize", "x"}, 1468, 512, ""},
		{"order kept", []string{"tsize", "0", "blksize", "1024"}, 1468, 1024, "tsize\x00123\x00blksize\x001024\x00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := parseRequest(tftpRRQ(opRRQ, "f", "octet", tc.opts...))
			if err != nil {
				t.Fatal(err)
			}
			n := negotiate(r, tc.max, 123)
			if n.blksize != tc.blksize {
				t.Fatalf("blksize %d, want %d", n.blksize, tc.blksize)
			}
			want := []byte(nil)
			if tc.oack != "" {
				want = append([]byte{0, opOACK}, tc.oack...)
			}
			if !bytes.Equal(n.oack, want) {
				t.Fatalf("oack %q, want %q", n.oack, want)
			}
		})
	}
}

func TestNetascii(t *testing.T) {
	if got := toNetascii([]byte("a\nb\rc")); string(got) != "a\r\nb\r\x00c" {
		t.Fatalf("got %q", got)
	}
}

func FuzzParseRequest(f *testing.F) {
	f.Add(tftpRRQ(opRRQ, "d9780558/start4.elf", "octet", "tsize", "0", "blksize", "1024"))
	f.Add(tftpRRQ(opWRQ, "x", "netascii"))
	f.Add([]byte{0, 1, 0, 0})
	f.Add([]byte("\x00\x01a\x00octet\x00blksize\x00999999999999999999999\x00"))
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := parseRequest(p)
		if err != nil {
			return
		}
		if r.Filename == "" || (r.Mode != "octet" && r.Mode != "netascii") {
			t.Fatalf("accepted %+v", r)
		}
		n := negotiate(r, 1468, 42)
		if n.blksize < minBlockSize || n.blksize > 1468 {
			t.Fatalf("negotiated blksize %d", n.blksize)
		}
	})
}

func FuzzParseClientPacket(f *testing.F) {
	f.Add([]byte{0, 4, 0, 1})
	f.Add(errorPacket(0, "Early terminate"))
	f.Add([]byte{0, 5, 0, 0})
	f.Add([]byte{0, 3, 0, 1, 'x'})
	f.Fuzz(func(t *testing.T, p []byte) {
		c, err := parseClientPacket(p)
		if err != nil {
			return
		}
		if c.Op == opACK && c.Block != binary.BigEndian.Uint16(p[2:]) {
			t.Fatalf("block %d from %x", c.Block, p)
		}
		if c.Op != opACK && c.Op != opERROR {
			t.Fatalf("accepted opcode %d", c.Op)
		}
	})
}
