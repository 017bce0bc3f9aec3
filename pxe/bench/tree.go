package bench

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// PiFile is one file of the Raspberry Pi 4 boot sequence.
type PiFile struct {
	Name string
	Size int64
}

// PiFiles returns the Pi 4/CM4 files fetched after the probe, in order,
// with realistic sizes; the kernel (8 MiB) and initramfs (20 MiB) are
// multiplied by scale to keep a storm short.
func PiFiles(scale float64) []PiFile {
	return []PiFile{
		{"config.txt", 78},
		{"start4.elf", 2_228_224},
		{"fixup4.dat", 5_446},
		{"cmdline.txt", 120},
		{"bcm2711-rpi-cm4.dtb", 51_200},
		{"kernel8.img", int64(float64(8<<20) * scale)},
		{"initramfs", int64(float64(20<<20) * scale)},
	}
}

// Tree is the generated artifact tree, readable by the unprivileged users
// tftp-hpa and dnsmasq switch to.
type Tree struct {
	Dir  string // work directory (logs, profiles)
	Root string // the TFTP root
}

// ThroughputFile names the file of the throughput runs.
func ThroughputFile(size int64) string { return fmt.Sprintf("f%d", size) }

// MakeTree writes ready.txt, the throughput file, the Pi files under pi/
// and, for tftp-hpa, dnsmasq and bare pin (which know nothing of serials),
// one SERIAL/ directory of hard links per simulated Pi. Our server
// resolves SERIAL/ through the inventory instead.
func MakeTree(size int64, piClients int, scale float64) (*Tree, error) {
	dir, err := os.MkdirTemp("", "nbtftpbench-")
	if err != nil {
		return nil, fmt.Errorf("make tree: %w", err)
	}
	t := &Tree{Dir: dir, Root: filepath.Join(dir, "root")}
	if err := t.build(size, piClients, scale); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return t, nil
}

func (t *Tree) build(size int64, piClients int, scale float64) error {
	for _, d := range []string{t.Dir, t.Root, filepath.Join(t.Root, "pi")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("make tree: %w", err)
		}
		os.Chmod(d, 0o755)
	}
	if err := writeRandom(filepath.Join(t.Root, "ready.txt"), 10); err != nil {
		return err
	}
	if err := writeRandom(filepath.Join(t.Root, ThroughputFile(size)), size); err != nil {
		return err
	}
	for _, f := range PiFiles(scale) {
		if err := writeRandom(filepath.Join(t.Root, "pi", f.Name), f.Size); err != nil {
			return err
		}
	}
	for i := 0; i < piClients; i++ {
		sd := filepath.Join(t.Root, PiSerial(i))
		if err := os.MkdirAll(sd, 0o755); err != nil {
			return fmt.Errorf("make tree: %w", err)
		}
		for _, f := range PiFiles(scale) {
			if err := os.Link(filepath.Join(t.Root, "pi", f.Name), filepath.Join(sd, f.Name)); err != nil {
				return fmt.Errorf("make tree: %w", err)
			}
		}
	}
	return nil
}

func writeRandom(path string, size int64) error {
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(uint64(size), 42))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("make tree: %w", err)
	}
	return nil
}

// Remove deletes the tree.
func (t *Tree) Remove() error { return os.RemoveAll(t.Dir) }
