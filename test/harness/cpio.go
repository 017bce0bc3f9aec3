package harness

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// CPIOWriter writes a gzip-compressed newc ("070701") cpio archive, the
// format the Linux kernel unpacks as an initramfs.
type CPIOWriter struct {
	gz    *gzip.Writer
	bw    *bufio.Writer
	ino   int
	dirs  map[string]bool
	count int
}

// NewCPIOWriter writes a compressed archive to w.
func NewCPIOWriter(w io.Writer) *CPIOWriter {
	bw := bufio.NewWriter(w)
	gz, _ := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	return &CPIOWriter{gz: gz, bw: bw, dirs: map[string]bool{".": true, "": true}}
}

const (
	modeDir     = 0o040000
	modeFile    = 0o100000
	modeSymlink = 0o120000
	modeCharDev = 0o020000
)

func (c *CPIOWriter) header(name string, mode uint32, size int, rdevMajor, rdevMinor int) error {
	c.ino++
	c.count++
	nlink := 1
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	if _, err := io.WriteString(c.gz, hdr+name+"\x00"); err != nil {
		return fmt.Errorf("write cpio header %s: %w", name, err)
	}
	return c.pad(len(hdr) + len(name) + 1)
}

func (c *CPIOWriter) pad(n int) error {
	if r := n % 4; r != 0 {
		if _, err := c.gz.Write(make([]byte, 4-r)); err != nil {
			return fmt.Errorf("write cpio padding: %w", err)
		}
	}
	return nil
}

// parents adds the missing parent directories of name.
func (c *CPIOWriter) parents(name string) error {
	dir := path.Dir(name)
	if c.dirs[dir] {
		return nil
	}
	if err := c.parents(dir); err != nil {
		return err
	}
	return c.Dir(dir)
}

func cleanName(name string) string { return strings.TrimPrefix(path.Clean("/"+name), "/") }

// Dir adds a directory (mode 0755).
func (c *CPIOWriter) Dir(name string) error {
	name = cleanName(name)
	if c.dirs[name] {
		return nil
	}
	if err := c.parents(name); err != nil {
		return err
	}
	c.dirs[name] = true
	return c.header(name, modeDir|0o755, 0, 0, 0)
}

// File adds a regular file with permissions perm.
func (c *CPIOWriter) File(name string, perm os.FileMode, data []byte) error {
	name = cleanName(name)
	if err := c.parents(name); err != nil {
		return err
	}
	if err := c.header(name, modeFile|uint32(perm.Perm()), len(data), 0, 0); err != nil {
		return err
	}
	if _, err := c.gz.Write(data); err != nil {
		return fmt.Errorf("write cpio file %s: %w", name, err)
	}
	return c.pad(len(data))
}

// CopyFile adds the host file src as name, keeping its permissions.
func (c *CPIOWriter) CopyFile(name, src string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("cpio copy %s: %w", src, err)
	}
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("cpio copy %s: %w", src, err)
	}
	return c.File(name, st.Mode(), data)
}

// Symlink adds name pointing at target.
func (c *CPIOWriter) Symlink(name, target string) error {
	name = cleanName(name)
	if err := c.parents(name); err != nil {
		return err
	}
	if err := c.header(name, modeSymlink|0o777, len(target), 0, 0); err != nil {
		return err
	}
	if _, err := io.WriteString(c.gz, target); err != nil {
		return fmt.Errorf("write cpio symlink %s: %w", name, err)
	}
	return c.pad(len(target))
}

// CharDev adds a character device node (e.g. /dev/console 5,1).
func (c *CPIOWriter) CharDev(name string, perm os.FileMode, major, minor int) error {
	name = cleanName(name)
	if err := c.parents(name); err != nil {
		return err
	}
	return c.header(name, modeCharDev|uint32(perm.Perm()), 0, major, minor)
}

// Close writes the trailer and flushes; it does not close the underlying writer.
func (c *CPIOWriter) Close() error {
	if err := c.header("TRAILER!!!", 0, 0, 0, 0); err != nil {
		return err
	}
	if err := c.gz.Close(); err != nil {
		return fmt.Errorf("close cpio gzip: %w", err)
	}
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("flush cpio: %w", err)
	}
	return nil
}
