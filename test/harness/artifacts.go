package harness

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// ArtifactsEnv names the directory under which tests keep their artifacts
// (serial logs, daemon logs, configs) after the run, one sub-directory per test.
const ArtifactsEnv = "NETBOOT_ARTIFACTS"

var unsafeNameChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// ArtifactDir returns a directory for t's artifacts. With $NETBOOT_ARTIFACTS
// set it is $NETBOOT_ARTIFACTS/<test name> and is kept after the test (its
// previous content is removed first); otherwise it is a t.TempDir().
func ArtifactDir(t testing.TB) string {
	t.Helper()
	root := os.Getenv(ArtifactsEnv)
	if root == "" {
		return t.TempDir()
	}
	dir := filepath.Join(root, unsafeNameChars.ReplaceAllString(t.Name(), "_"))
	if err := os.RemoveAll(dir); err != nil {
		t.Fatalf("artifact dir: remove %s: %v", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifact dir: create %s: %v", dir, err)
	}
	t.Logf("artifacts kept in %s", dir)
	return dir
}
