package main

import (
	"os/exec"
	"strings"
	"testing"

	"netboot/internal/testenv"
)

// TestPureGo keeps nbinit free of cgo, of rbd/ (go-ceph) and of net/http
// (TLS and x509 would add about 1 MiB to the image).
func TestPureGo(t *testing.T) {
	testenv.RequireTools(t, "go")
	for _, arch := range []string{"amd64", "arm64"} {
		cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} cgo={{len .CgoFiles}}", ".")
		cmd.Env = append(cmd.Environ(), "GOOS=linux", "GOARCH="+arch, "CGO_ENABLED=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			pkg, cgo, _ := strings.Cut(line, " ")
			switch {
			case strings.HasPrefix(pkg, "netboot/rbd"), strings.Contains(pkg, "go-ceph"), pkg == "net/http":
				t.Errorf("%s: nbinit imports %s", arch, pkg)
			case cgo != "cgo=0" && !strings.HasPrefix(pkg, "runtime/cgo") && !isStdCgo(pkg):
				t.Errorf("%s: nbinit depends on cgo package %s", arch, pkg)
			}
		}
	}
}

// isStdCgo: standard packages with optional cgo files (net, os/user) are
// built without them under CGO_ENABLED=0, which the image builder sets.
func isStdCgo(pkg string) bool {
	first := strings.SplitN(pkg, "/", 2)[0]
	return !strings.Contains(first, ".") && first != "netboot"
}
