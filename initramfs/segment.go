package initramfs

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/u-root/mkuimage/cpio"
)

// File is one entry of an image segment.
type File struct {
	Path string // inside the image, no leading slash
	Data []byte
	Mode uint64 // permission bits; 0 means 0644
}

// WriteSegment writes files as one gzip-compressed newc cpio archive with
// its parent directories and a trailer. Output is a pure function of the
// input: records are sorted and reproducible (mtime 0, uid/gid 0), and the
// gzip header carries no name or time. The kernel unpacks concatenated
// segments in order, later files replacing earlier ones.
func WriteSegment(w io.Writer, files []File, level int) error {
	zw, err := gzip.NewWriterLevel(w, level)
	if err != nil {
		return fmt.Errorf("write segment: %w", err)
	}
	cw := cpio.Newc.Writer(zw)
	for _, r := range segmentRecords(files) {
		if err := cw.WriteRecord(cpio.MakeReproducible(r)); err != nil {
			return fmt.Errorf("write segment: %s: %w", r.Name, err)
		}
	}
	if err := cpio.WriteTrailer(cw); err != nil {
		return fmt.Errorf("write segment trailer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("write segment: %w", err)
	}
	return nil
}

func segmentRecords(files []File) []cpio.Record {
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	dirs := map[string]bool{}
	var recs []cpio.Record
	for _, f := range sorted {
		p := strings.TrimPrefix(path.Clean("/"+f.Path), "/")
		for _, d := range parents(p) {
			if !dirs[d] {
				dirs[d] = true
				recs = append(recs, cpio.Directory(d, 0o755))
			}
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		recs = append(recs, cpio.StaticFile(p, string(f.Data), mode))
	}
	return recs
}

// parents returns "a", "a/b" for "a/b/c".
func parents(p string) []string {
	var out []string
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			out = append(out, p[:i])
		}
	}
	return out
}

// Listing returns "mode name -> target" lines of every record in a
// (possibly multi-segment, gzip or plain) initramfs, for tests and
// `netbootctl initramfs list`.
func Listing(image []byte) ([]string, error) {
	var out []string
	for seg := 0; len(image) > 0; seg++ {
		plain, rest, err := nextSegment(image)
		if err != nil {
			return nil, fmt.Errorf("list segment %d: %w", seg, err)
		}
		recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(plain)))
		if err != nil {
			return nil, fmt.Errorf("list segment %d: %w", seg, err)
		}
		for _, r := range recs {
			out = append(out, r.Info.String())
		}
		image = rest
	}
	return out, nil
}

// nextSegment decompresses one gzip member (or takes the rest as plain
// cpio) and returns what follows it.
func nextSegment(b []byte) (plain, rest []byte, err error) {
	if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		return b, nil, nil
	}
	br := bytes.NewReader(b)
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, nil, err
	}
	zr.Multistream(false)
	plain, err = io.ReadAll(zr)
	if err != nil {
		return nil, nil, err
	}
	rest = b[len(b)-br.Len():]
	// Skip zero padding between segments.
	for len(rest) > 0 && rest[0] == 0 {
		rest = rest[1:]
	}
	return plain, rest, nil
}
