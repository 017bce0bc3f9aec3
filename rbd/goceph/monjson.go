package goceph

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"netboot/rbd"
)

// Mon command bodies and output parsers. They are pure Go (no cgo) so that
// they are unit- and fuzz-tested without a cluster.

// blocklistJSON is one entry: exact entries carry "addr", range entries
// (Pacific 16.2.15) "range" ("127.0.9.0:0/24").
type blocklistJSON struct {
	Addr  string `json:"addr"`
	Range string `json:"range"`
	Until string `json:"until"`
}

// cephTime is the format of "until" in `osd blocklist ls`.
const cephTime = "2006-01-02T15:04:05.999999-0700"

// parseBlocklist decodes the output of {"prefix":"osd blocklist ls",
// "format":"json"}. Pacific prints two concatenated JSON arrays: exact
// entries ({"addr":"ip:port/nonce","until":…}), then range entries
// ({"range":"127.0.9.0:0/24","until":…}).
func parseBlocklist(out []byte) ([]rbd.BlocklistEntry, error) {
	dec := json.NewDecoder(bytes.NewReader(out))
	var entries []rbd.BlocklistEntry
	for part := 0; ; part++ {
		var raw []blocklistJSON
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return entries, nil
		}
		if err != nil {
			return nil, fmt.Errorf("parse osd blocklist ls: %w", err)
		}
		for _, r := range raw {
			e, err := parseBlocklistEntry(r, part > 0)
			if err != nil {
				return nil, fmt.Errorf("parse osd blocklist ls: %w", err)
			}
			entries = append(entries, e)
		}
	}
}

func parseBlocklistEntry(r blocklistJSON, rangePart bool) (rbd.BlocklistEntry, error) {
	var e rbd.BlocklistEntry
	if r.Until != "" {
		t, err := time.Parse(cephTime, r.Until)
		if err != nil {
			return e, fmt.Errorf("entry %q: until %q: %w", r.Addr, r.Until, err)
		}
		e.Until = t
	}
	if r.Range != "" || rangePart || strings.HasPrefix(r.Addr, "cidr:") {
		s := r.Range
		if s == "" {
			s = r.Addr
		}
		p, err := rbd.ParseRange(s)
		if err != nil {
			return e, err
		}
		e.Range = p
		return e, nil
	}
	a, err := rbd.ParseAddr(r.Addr)
	if err != nil {
		return e, err
	}
	e.Addr = a
	return e, nil
}

func blocklistLsCmd() []byte {
	return []byte(`{"prefix":"osd blocklist ls","format":"json"}`)
}

// blocklistAddCmd: "expire" must be a JSON number with a decimal point;
// Pacific rejects 3600 with "bad or missing field 'expire'".
func blocklistAddCmd(a rbd.Addr, expiry time.Duration) ([]byte, error) {
	secs := strconv.FormatFloat(expiry.Seconds(), 'f', 1, 64)
	return json.Marshal(map[string]any{"prefix": "osd blocklist", "blocklistop": "add", "addr": a.String(), "expire": json.RawMessage(secs)})
}

func blocklistRmCmd(e rbd.BlocklistEntry) ([]byte, error) {
	if e.IsRange() {
		return json.Marshal(map[string]any{"prefix": "osd blocklist", "range": "range", "blocklistop": "rm", "addr": e.Range.String()})
	}
	return json.Marshal(map[string]any{"prefix": "osd blocklist", "blocklistop": "rm", "addr": e.Addr.String()})
}

// BlocklistRangeAddCmd is the mon command that blocklists a CIDR range
// (tests use it to create range entries).
func BlocklistRangeAddCmd(cidr string, expiry time.Duration) ([]byte, error) {
	secs := strconv.FormatFloat(expiry.Seconds(), 'f', 1, 64)
	return json.Marshal(map[string]any{"prefix": "osd blocklist", "range": "range", "blocklistop": "add", "addr": cidr, "expire": json.RawMessage(secs)})
}

func capsList(caps rbd.Caps) []string {
	var l []string
	for _, svc := range []string{"mon", "osd", "mgr", "mds"} {
		if c, ok := caps[svc]; ok {
			l = append(l, svc, c)
		}
	}
	return l
}

func authGetOrCreateCmd(entity string, caps rbd.Caps) ([]byte, error) {
	return json.Marshal(map[string]any{"prefix": "auth get-or-create", "entity": entity, "caps": capsList(caps), "format": "json"})
}

func authCapsCmd(entity string, caps rbd.Caps) ([]byte, error) {
	return json.Marshal(map[string]any{"prefix": "auth caps", "entity": entity, "caps": capsList(caps)})
}

func authGetKeyCmd(entity string) ([]byte, error) {
	return json.Marshal(map[string]any{"prefix": "auth get-key", "entity": entity, "format": "json"})
}

// parseKey reads the key from `auth get-or-create` ([{"key":…}]) or
// `auth get-key` ({"key":…}) JSON output.
func parseKey(out []byte) (string, error) {
	var list []struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal(out, &list); err == nil && len(list) > 0 && list[0].Key != "" {
		return list[0].Key, nil
	}
	var one struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal(out, &one); err != nil || one.Key == "" {
		return "", fmt.Errorf("parse cephx key: no key in %d bytes of output", len(out))
	}
	return one.Key, nil
}

// decodeCephString decodes a Ceph-encoded string (u32 little-endian
// length, bytes), the content of an rbd_id.<name> object.
func decodeCephString(b []byte) (string, error) {
	if len(b) < 4 {
		return "", fmt.Errorf("decode image id: %d bytes", len(b))
	}
	n := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
	if n == 0 || uint64(n) != uint64(len(b)-4) {
		return "", fmt.Errorf("decode image id: length %d in %d bytes", n, len(b))
	}
	return string(b[4:]), nil
}
