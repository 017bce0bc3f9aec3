package boot

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"netboot/internal/clock"
	"netboot/internal/event"
)

// benchLines is a realistic stream: the recorded boots, mostly harmless
// lines with the failure lines among them.
func benchLines(b *testing.B) []string {
	files, err := filepath.Glob(filepath.Join("testdata", "netconsole", "*.log"))
	if err != nil || len(files) == 0 {
		b.Fatalf("no recorded streams: %v", err)
	}
	var lines []string
	for _, f := range files {
		lines = append(lines, readLines(b, f)...)
	}
	return lines
}

// BenchmarkCatalogueMatch compares the catalogue's literal prefilter with
// trying every regular expression (the peer), on the same lines in the same
// run, and reports both rates and their ratio.
func BenchmarkCatalogueMatch(b *testing.B) {
	lines := benchLines(b)
	cat, err := NewCatalogue(nil)
	if err != nil {
		b.Fatal(err)
	}
	naive := func(l string) bool {
		for _, s := range cat.sigs {
			if s.re.MatchString(l) {
				return true
			}
		}
		return false
	}
	var tPre, tNaive time.Duration
	hits := 0
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		for _, l := range lines {
			if _, ok := cat.Match(l); ok {
				hits++
			}
		}
		tPre += time.Since(start)
		start = time.Now()
		for _, l := range lines {
			if naive(l) {
				hits--
			}
		}
		tNaive += time.Since(start)
	}
	if hits != 0 {
		b.Fatalf("prefilter and all-regexes disagree on %d lines", hits)
	}
	n := float64(b.N * len(lines))
	b.ReportMetric(n/tPre.Seconds(), "lines/s")
	b.ReportMetric(n/tNaive.Seconds(), "naive-lines/s")
	b.ReportMetric(tNaive.Seconds()/tPre.Seconds(), "x-vs-naive")
}

// BenchmarkObserveLine measures the tracker's whole per-line path (ring,
// netconsole smoke regexes, catalogue, excerpt) for one host's boot.
func BenchmarkObserveLine(b *testing.B) {
	lines := benchLines(b)
	clk := clock.NewFake(t0)
	st := memStoreB(b)
	tr, err := New(context.Background(), Config{Inventory: testInventory(), Store: st, Clock: clk})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	if _, err := tr.Record(context.Background(), event.Event{Host: "udoo1", Time: t0, Kind: event.KernelLine, Stage: event.StageKernelUp}); err != nil {
		b.Fatal(err)
	}
	harmless := make([]string, 0, len(lines))
	for _, l := range lines {
		if _, ok := tr.cat.Match(l); !ok {
			harmless = append(harmless, l)
		}
	}
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		tr.observe("udoo1", 0, t0, harmless[i%len(harmless)])
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "lines/s")
}
