package initramfs

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/u-root/mkuimage/cpio"

	"netboot/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestResolve(t *testing.T) {
	db, err := OpenModuleDB("testdata/modules")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		names   []string
		want    string
		wantErr string
	}{
		{[]string{"rbd"}, "crc32c_intel crc32c_generic libcrc32c libceph rbd", ""},
		{[]string{"virtio_net", "virtio-pci", "netconsole"}, "virtio_ring virtio failover net_failover virtio_net configfs netconsole", ""},
		{[]string{"rbd", "libceph", "rbd"}, "crc32c_intel crc32c_generic libcrc32c libceph rbd", ""},
		{[]string{"ext4"}, "", ""}, // built in
		{[]string{"nosuch", "rbd", "alsonot"}, "", "not found and not built in: alsonot, nosuch"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.names, ","), func(t *testing.T) {
			mods, err := db.Resolve(tt.names)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range mods {
				got = append(got, m.Name)
			}
			if strings.Join(got, " ") != tt.want {
				t.Errorf("Resolve = %q, want %q", strings.Join(got, " "), tt.want)
			}
		})
	}
}

func TestParseModulesDepErrors(t *testing.T) {
	for _, in := range []string{"no colon here\n", "a.ko: /abs/b.ko\n", "../x.ko:\n", "a.ko: notamodule\n"} {
		if _, _, err := ParseModulesDep([]byte(in)); err == nil {
			t.Errorf("ParseModulesDep(%q) accepted", in)
		}
	}
}

func FuzzParseModulesDep(f *testing.F) {
	b, _ := os.ReadFile("testdata/modules/modules.dep")
	f.Add(string(b))
	f.Add("a.ko: b.ko c.ko.xz\nb.ko:\n")
	f.Add("x.ko: x.ko\n")
	f.Fuzz(func(t *testing.T, in string) {
		deps, byName, err := ParseModulesDep([]byte(in))
		if err != nil {
			return
		}
		for rel, ds := range deps {
			if filepath.IsAbs(rel) || strings.Contains(rel, "..") || byName[modName(rel)] == "" {
				t.Fatalf("bad entry %q", rel)
			}
			for _, d := range ds {
				if filepath.IsAbs(d) || strings.Contains(d, "..") {
					t.Fatalf("bad dep %q", d)
				}
			}
		}
		// Resolution must terminate on any graph, cycles included.
		db := &ModuleDB{deps: deps, byName: byName, builtin: map[string]bool{}}
		var names []string
		for n := range byName {
			names = append(names, n)
		}
		if _, err := db.Resolve(names); err != nil {
			t.Fatalf("resolve all parsed modules: %v", err)
		}
	})
}

func TestSegmentDeterministic(t *testing.T) {
	files := []File{{Path: "etc/nbinit/config.json", Data: []byte("{}\n")}, {Path: "lib/modules/nbinit/00-a.ko", Data: []byte("A")}}
	var a, b bytes.Buffer
	if err := WriteSegment(&a, files, gzip.BestCompression); err != nil {
		t.Fatal(err)
	}
	if err := WriteSegment(&b, []File{files[1], files[0]}, gzip.BestCompression); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("same files in another order gave other bytes")
	}
	got, err := Listing(a.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"etc", "etc/nbinit", "etc/nbinit/config.json", "lib", "lib/modules", "lib/modules/nbinit", "lib/modules/nbinit/00-a.ko"}
	if names := recordNames(got); !reflect.DeepEqual(names, want) {
		t.Errorf("listing = %v, want %v", names, want)
	}
}

func recordNames(listing []string) []string {
	var out []string
	for _, l := range listing {
		name, _, _ := strings.Cut(l, ":")
		out = append(out, name)
	}
	return out
}

// TestAssemble appends modules and host segments to a base and reads the
// result back the way the kernel does: segment after segment.
func TestAssemble(t *testing.T) {
	dir := t.TempDir()
	b, err := New(Config{CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "base.cpio.gz")
	writeTestBase(t, base, 1<<16)
	mods, resolved, err := b.ModulesSegment("amd64", "testdata/modules", []string{"rbd", "netconsole"})
	if err != nil {
		t.Fatal(err)
	}
	if len(resolved) != 7 {
		t.Errorf("resolved %d modules, want 7", len(resolved))
	}
	again, _, err := b.ModulesSegment("amd64", "testdata/modules", []string{"rbd", "netconsole"})
	if err != nil || again != mods {
		t.Errorf("modules segment not cached: %s vs %s (%v)", again, mods, err)
	}
	var img bytes.Buffer
	host := HostConfig{Host: "node1", Server: "10.0.0.1:8080", Netconsole: "10.0.0.1:6666", OnFailure: "reboot"}
	if err := Assemble(&img, base, mods, host); err != nil {
		t.Fatal(err)
	}
	files := extract(t, img.Bytes())
	if _, ok := files["bbin/bb"]; !ok {
		t.Error("base content missing")
	}
	var cfg HostConfig
	if err := json.Unmarshal(files["etc/nbinit/config.json"], &cfg); err != nil || cfg != host {
		t.Errorf("config.json = %s (%v)", files["etc/nbinit/config.json"], err)
	}
	list := string(files["etc/nbinit/modules"])
	wantOrder := []string{"crc32c_intel", "crc32c_generic", "libcrc32c", "libceph", "rbd", "configfs", "netconsole"}
	lines := strings.Split(strings.TrimSpace(list), "\n")[1:]
	for i, name := range wantOrder {
		want := fmt.Sprintf("/%s/%02d-%s.ko", ModuleDir, i, name)
		if i >= len(lines) || lines[i] != want {
			t.Fatalf("modules list:\n%s\nwant line %d = %s", list, i, want)
		}
		if _, ok := files[strings.TrimPrefix(want, "/")]; !ok {
			t.Errorf("%s listed but not in the image", want)
		}
	}
}

// writeTestBase writes a stand-in base segment with a size-byte bb binary.
func writeTestBase(t testing.TB, path string, size int) {
	t.Helper()
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7 % 251)
	}
	var buf bytes.Buffer
	if err := WriteSegment(&buf, []File{{Path: "bbin/bb", Data: data, Mode: 0o755}}, gzip.BestSpeed); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// extract unpacks every segment in order, later files replacing earlier
// ones, as the kernel's initramfs unpacker does.
func extract(t *testing.T, image []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for len(image) > 0 {
		plain, rest, err := nextSegment(image)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(plain)))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.ReaderAt == nil {
				files[r.Name] = nil
				continue
			}
			data := make([]byte, r.FileSize)
			r.ReadAt(data, 0)
			files[r.Name] = data
		}
		image = rest
	}
	return files
}

// TestBuildBase compiles the real base for both arches, checks its listing
// against the golden file, the binary's architecture and the size budget,
// and builds amd64 a second time in a fresh cache to check reproducibility.
func TestBuildBase(t *testing.T) {
	testenv.Short(t)
	testenv.RequireTools(t, "go")
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	sums := map[string][32]byte{}
	keyBefore := baseKey(t, "amd64")
	for _, arch := range Arches {
		t.Run(arch, func(t *testing.T) {
			data, took := buildFresh(t, arch)
			sums[arch] = sha256.Sum256(data)
			t.Logf("cold build %s: %s, %d bytes gzipped (budget %d)", arch, took.Round(time.Millisecond), len(data), 3<<20)
			if len(data) > 3<<20 {
				t.Errorf("base is %d bytes gzipped, over the 3 MiB budget", len(data))
			}
			files := extract(t, data)
			f, err := elf.NewFile(bytes.NewReader(files["bbin/bb"]))
			if err != nil {
				t.Fatalf("bbin/bb: %v", err)
			}
			if f.Machine != machines[arch] {
				t.Errorf("bbin/bb is %v, want %v", f.Machine, machines[arch])
			}
			checkGolden(t, "testdata/base-"+arch+".golden", baseListing(t, data))
		})
	}
	t.Run("reproducible", func(t *testing.T) {
		data, _ := buildFresh(t, "amd64")
		if baseKey(t, "amd64") != keyBefore {
			t.Fatalf("nbinit's sources changed during the test; run it again")
		}
		if sums["amd64"] != sha256.Sum256(data) {
			t.Errorf("two cold amd64 builds from the same inputs differ")
		}
	})
}

func baseKey(t *testing.T, arch string) string {
	t.Helper()
	b, err := New(Config{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	key, err := b.BaseKey(context.Background(), arch)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func buildFresh(t *testing.T, arch string) ([]byte, time.Duration) {
	t.Helper()
	b, err := New(Config{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	start, cpu0 := time.Now(), childCPU()
	path, err := b.Base(context.Background(), arch)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("cold build %s: CPU of the go toolchain %s (wall depends on the load of the shared cores)", arch, (childCPU() - cpu0).Round(time.Millisecond))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data, took
}

// childCPU is the user+system time of waited-for children (the go tool).
func childCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// baseListing is the listing without sizes (they change with the code).
func baseListing(t *testing.T, data []byte) string {
	t.Helper()
	plain, _, err := nextSegment(data)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(plain)))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, r := range recs {
		line := fmt.Sprintf("%s mode=%o uid=%d gid=%d mtime=%d", r.Name, r.Mode, r.UID, r.GID, r.MTime)
		if r.Mode&cpio.S_IFMT == cpio.S_IFLNK {
			target := make([]byte, r.FileSize)
			r.ReadAt(target, 0)
			line += " -> " + string(target)
		}
		if r.Mode&cpio.S_IFMT == cpio.S_IFCHR {
			line += fmt.Sprintf(" dev=%d,%d", r.Rmajor, r.Rminor)
		}
		out.WriteString(line + "\n")
	}
	return out.String()
}

func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file: %v (run with -update)", err)
	}
	if got != string(want) {
		t.Errorf("listing differs from %s:\n%s", path, got)
	}
}

func FuzzListing(f *testing.F) {
	var seg bytes.Buffer
	if err := WriteSegment(&seg, []File{{Path: "etc/x", Data: []byte("y")}}, gzip.BestSpeed); err != nil {
		f.Fatal(err)
	}
	f.Add(seg.Bytes())
	f.Add(append(seg.Bytes(), seg.Bytes()...))
	f.Add([]byte("070701garbage"))
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	f.Fuzz(func(t *testing.T, image []byte) {
		_, _ = Listing(image) // must not panic or hang
	})
}

func FuzzSoftdepAlias(f *testing.F) {
	f.Add("softdep libcrc32c pre: crc32c post: x\n", "alias crc32c crc32c_generic\nalias pci:v* virtio_net\n")
	f.Add("softdep a\n", "alias\n")
	f.Fuzz(func(t *testing.T, softdep, alias string) {
		for mod, pre := range parseSoftdep([]byte(softdep)) {
			if mod == "" || len(pre) == 0 {
				t.Fatalf("empty softdep entry %q %v", mod, pre)
			}
		}
		for a := range parseAliases([]byte(alias)) {
			if strings.ContainsAny(a, "*?[ ") {
				t.Fatalf("wildcard alias %q kept", a)
			}
		}
	})
}
