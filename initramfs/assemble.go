package initramfs

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"
)

// HostConfig is /etc/nbinit/config.json, read by nbinit (cmd/nbinit
// Config: same JSON keys). Kernel parameters nb.* override it.
type HostConfig struct {
	Host        string `json:"host,omitempty"`
	Server      string `json:"server,omitempty"`     // netbootd HTTP ip:port
	Netconsole  string `json:"netconsole,omitempty"` // collector ip:port
	Interface   string `json:"interface,omitempty"`
	OnFailure   string `json:"on_failure,omitempty"` // shell, reboot, halt
	Deadline    string `json:"deadline,omitempty"`   // e.g. "5m"
	RootFSType  string `json:"root_fstype,omitempty"`
	RootOptions string `json:"root_options,omitempty"`
	Init        string `json:"init,omitempty"`
}

// ModuleDir is where module files go inside the image.
const ModuleDir = "lib/modules/nbinit"

// ModulesSegment returns the cached modules segment for names (nil: the
// arch's DefaultModules) resolved in modDir, building it if needed.
func (b *Builder) ModulesSegment(arch, modDir string, names []string) (string, []Module, error) {
	if names == nil {
		names = DefaultModules[arch]
	}
	b.modMu.Lock()
	defer b.modMu.Unlock()
	db, err := b.moduleDB(modDir)
	if err != nil {
		return "", nil, err
	}
	mods, err := db.Resolve(names)
	if err != nil {
		return "", nil, err
	}
	key, err := modulesKey(db, mods)
	if err != nil {
		return "", nil, err
	}
	path := filepath.Join(b.cfg.CacheDir, "modules-"+arch+"-"+key+".cpio.gz")
	if _, err := os.Stat(path); err == nil {
		return path, mods, nil
	}
	files, err := moduleFiles(db, mods)
	if err != nil {
		return "", nil, err
	}
	if err := writeFileAtomic(path, func(w io.Writer) error { return WriteSegment(w, files, gzip.BestCompression) }); err != nil {
		return "", nil, fmt.Errorf("modules segment: %w", err)
	}
	b.log.Info("initramfs: modules segment built", zap.String("arch", arch), zap.Int("modules", len(mods)), zap.String("path", path))
	return path, mods, nil
}

// moduleDB returns the parsed modules dir, re-read when modules.dep changes.
func (b *Builder) moduleDB(dir string) (*ModuleDB, error) {
	st, err := os.Stat(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("open module db: %w (run depmod -b)", err)
	}
	stamp := fmt.Sprint(st.Size(), st.ModTime().UnixNano())
	if c, ok := b.dbs[dir]; ok && c.stamp == stamp {
		return c.db, nil
	}
	db, err := OpenModuleDB(dir)
	if err != nil {
		return nil, err
	}
	if b.dbs == nil {
		b.dbs = map[string]cachedDB{}
	}
	b.dbs[dir] = cachedDB{db: db, stamp: stamp}
	return db, nil
}

type cachedDB struct {
	db    *ModuleDB
	stamp string
}

func modulesKey(db *ModuleDB, mods []Module) (string, error) {
	h := sha256.New()
	fmt.Fprintln(h, formatVersion, db.Dir)
	for _, m := range mods {
		st, err := os.Stat(filepath.Join(db.Dir, m.Rel))
		if err != nil {
			return "", fmt.Errorf("module %s: %w", m.Name, err)
		}
		fmt.Fprintln(h, m.Rel, st.Size(), st.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil))[:24], nil
}

// moduleFiles reads the modules and writes the load list nbinit follows.
func moduleFiles(db *ModuleDB, mods []Module) ([]File, error) {
	var files []File
	var list strings.Builder
	list.WriteString("# load order, written by netboot/initramfs\n")
	for i, m := range mods {
		data, err := os.ReadFile(filepath.Join(db.Dir, m.Rel))
		if err != nil {
			return nil, fmt.Errorf("read module %s: %w", m.Name, err)
		}
		ext := filepath.Base(m.Rel)[strings.Index(filepath.Base(m.Rel), ".ko"):]
		name := fmt.Sprintf("%02d-%s%s", i, m.Name, ext)
		files = append(files, File{Path: ModuleDir + "/" + name, Data: data})
		fmt.Fprintf(&list, "/%s/%s\n", ModuleDir, name)
	}
	files = append(files, File{Path: "etc/nbinit/modules", Data: []byte(list.String())})
	return files, nil
}

// HostSegment returns the gzip cpio segment holding the host's config.
func HostSegment(h HostConfig) ([]byte, error) {
	data, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("host segment: %w", err)
	}
	var buf bytes.Buffer
	if err := WriteSegment(&buf, []File{{Path: "etc/nbinit/config.json", Data: append(data, '\n')}}, gzip.BestSpeed); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Assemble writes base, then the modules segment (if any), then the host
// segment to w. Nothing is compiled; segments are copied as they are.
func Assemble(w io.Writer, base, modules string, h HostConfig) error {
	for _, p := range []string{base, modules} {
		if p == "" {
			continue
		}
		if err := copyFile(w, p); err != nil {
			return fmt.Errorf("assemble: %w", err)
		}
	}
	seg, err := HostSegment(h)
	if err != nil {
		return err
	}
	if _, err := w.Write(seg); err != nil {
		return fmt.Errorf("assemble: write host segment: %w", err)
	}
	return nil
}

func copyFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// ImageSpec describes one host's image.
type ImageSpec struct {
	Arch       string
	ModulesDir string   // lib/modules/<kver> with modules.dep; "" for none
	Modules    []string // nil: DefaultModules[Arch]
	Host       HostConfig
}

// Image writes the host's image, building cached segments as needed.
func (b *Builder) Image(ctx context.Context, w io.Writer, spec ImageSpec) error {
	base, err := b.Base(ctx, spec.Arch)
	if err != nil {
		return err
	}
	var mods string
	if spec.ModulesDir != "" {
		if mods, _, err = b.ModulesSegment(spec.Arch, spec.ModulesDir, spec.Modules); err != nil {
			return err
		}
	}
	return Assemble(w, base, mods, spec.Host)
}

// writeFileAtomic writes path through a temp file and rename.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
