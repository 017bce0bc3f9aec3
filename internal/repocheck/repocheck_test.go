package repocheck

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const root = "../.."

// goPackages returns every directory with non-test Go files, keyed by path.
func goPackages(t *testing.T) map[string][]string {
	t.Helper()
	pkgs := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules" || name == "bin" || name == "var") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			dir := filepath.Dir(path)
			pkgs[dir] = append(pkgs[dir], path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

func TestEveryPackageHasOneDocComment(t *testing.T) {
	for dir, files := range goPackages(t) {
		var withDoc []string
		for _, f := range files {
			af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Errorf("parse %s: %v", f, err)
				continue
			}
			if af.Doc != nil && strings.HasPrefix(af.Doc.Text(), docPrefix(af.Name.Name)) {
				withDoc = append(withDoc, filepath.Base(f))
			} else if af.Doc != nil && af.Name.Name != "main" {
				t.Errorf("%s: package comment does not start with %q", f, docPrefix(af.Name.Name))
			}
		}
		switch {
		case len(withDoc) == 0:
			t.Errorf("%s: no package doc comment", rel(dir))
		case len(withDoc) > 1 && !allConstrained(dir, withDoc):
			t.Errorf("%s: package doc in several files: %v", rel(dir), withDoc)
		}
	}
}

// allConstrained reports whether every file carries a //go:build line:
// alternatives for different builds (with and without Ceph) may each carry
// the doc, since only one of them is compiled.
func allConstrained(dir string, files []string) bool {
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || !strings.HasPrefix(string(b), "//go:build ") {
			return false
		}
	}
	return true
}

func docPrefix(pkg string) string {
	if pkg == "main" {
		return "Command "
	}
	return "Package " + pkg + " "
}

// TestCgoStaysInRBD: only rbd/goceph (and test programs that play Ceph
// clients) may import go-ceph; nbinit and everything else stay pure Go.
func TestCgoStaysInRBD(t *testing.T) {
	for dir, files := range goPackages(t) {
		r := rel(dir)
		if strings.HasPrefix(r, "rbd/goceph") || strings.HasPrefix(r, "test/") {
			continue
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), `"github.com/ceph/go-ceph`) {
				t.Errorf("%s imports go-ceph: keep cgo in rbd/goceph", rel(f))
			}
		}
	}
}

func rel(p string) string {
	r, err := filepath.Rel(root, p)
	if err != nil {
		return p
	}
	return r
}
