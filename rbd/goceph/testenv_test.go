package goceph

import (
	"testing"

	"netboot/internal/testenv"
	"netboot/test/cephlab"
)

func testenvTools(t testing.TB) {
	t.Helper()
	testenv.RequireTools(t, cephlab.Tools...)
	testenv.RequireTools(t, "go")
}
