package main

import (
	"os"
	"testing"

	"netboot/internal/testenv"
	"netboot/pxe/bench"
)

// TestMain lets this test binary double as the Go TFTP servers that the
// benchmark starts as child processes.
func TestMain(m *testing.M) {
	if served, err := bench.ServeFromEnv(); served {
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// BenchmarkTFTPPeers is what `make bench` runs: the throughput matrix and
// the 200-Pi boot storm against netboot, bare pin/tftp, tftp-hpa and
// dnsmasq in one run. The table goes to stdout; the ratios of our server
// to dnsmasq and tftp-hpa are reported as metrics.
func BenchmarkTFTPPeers(b *testing.B) {
	if os.Getenv("NETBOOT_BENCH") != "1" {
		b.Skip("set NETBOOT_BENCH=1 (make bench): starts tftp-hpa and dnsmasq and takes minutes")
	}
	testenv.RequireRoot(b)
	testenv.RequireTools(b, "in.tftpd", "dnsmasq")
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		results, err := bench.Run(bench.Options{Exe: exe, Out: os.Stdout, Progress: os.Stderr})
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range results {
			if r.Failed > 0 && r.Server == bench.Netboot {
				b.Errorf("%s: %d failed transfers on our server: %v", r.Scenario, r.Failed, r.Errors)
			}
		}
		for _, m := range []struct{ scenario, peer, unit string }{
			{"throughput N=50 blksize=1468", bench.Dnsmasq, "x-dnsmasq-N50"},
			{"throughput N=50 blksize=1468", bench.HPA, "x-hpa-N50"},
			{"pi-storm", bench.Dnsmasq, "x-dnsmasq-storm"},
			{"pi-storm", bench.HPA, "x-hpa-storm"},
		} {
			if v, ok := bench.Ratio(results, m.scenario, m.peer); ok {
				b.ReportMetric(v, m.unit)
			}
		}
	}
}
