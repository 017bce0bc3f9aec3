package bench

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	if served, err := ServeFromEnv(); served {
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRunSmall runs the whole pipeline (tree, child servers, matrix,
// storm, table) at toy size against our server and bare pin/tftp.
func TestRunSmall(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	const size = 100_000
	results, err := Run(Options{Exe: exe, Servers: []string{Netboot, Pin}, Clients: []int{1, 4}, BlockSizes: []int{512, 1468},
		FileSize: size, StormClients: 3, StormScale: 0.01, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2*(4+1) {
		t.Fatalf("%d results, want 10", len(results))
	}
	storm := int64(0)
	for _, f := range PiFiles(0.01) {
		storm += f.Size
	}
	for _, r := range results {
		want := int64(size)
		switch {
		case strings.HasPrefix(r.Scenario, "pi-storm"):
			want = 3 * storm
		case strings.Contains(r.Scenario, "N=4 "):
			want = 4 * size
		}
		if r.Failed != 0 || r.Bytes != want {
			t.Errorf("%s/%s: failed %d, bytes %d (want %d): %v", r.Scenario, r.Server, r.Failed, r.Bytes, want, r.Errors)
		}
	}
	if !strings.Contains(out.String(), "| pi-storm N=3 blksize=1024 | pin |") {
		t.Fatalf("table lacks the storm row:\n%s", out.String())
	}
	if _, ok := Ratio(results, "pi-storm", Pin); !ok {
		t.Fatal("no storm ratio")
	}
}
