// Package testenv decides whether a test that needs a real peer (a Debian
// package, root, network namespaces, Ceph, QEMU) can run here.
//
// When NETBOOT_REQUIRE_ALL=1 (set by `make test` and CI, after `make deps`
// installed everything) a missing requirement fails the test: CI must never
// pass by skipping. Without it, a developer's `go test ./...` skips such tests
// with the reason.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Strict reports whether missing requirements fail instead of skip.
func Strict() bool { return os.Getenv("NETBOOT_REQUIRE_ALL") == "1" }

// Unavailable fails (strict) or skips the test with reason.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	if Strict() {
		t.Fatalf("requirement missing (NETBOOT_REQUIRE_ALL=1): %s; run `make deps`", reason)
	}
	t.Skipf("skipping: %s (run `make deps`, or `make test` to require it)", reason)
}

// RequireTools needs every named program on PATH (or as an absolute path).
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			Unavailable(t, tool+" is not installed")
		}
	}
}

// RequireRoot needs uid 0 (network namespaces, port 67, rbd map).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root")
	}
}

// Short skips slow tests under -short (never fails them).
func Short(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("slow test skipped under -short")
	}
}
