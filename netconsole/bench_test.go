package netconsole

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkProcess is the per-datagram cost of parsing, session tracking
// and line building (no socket, no store): the part of the receive path
// this package controls.
func BenchmarkProcess(b *testing.B) {
	for _, format := range []string{"extended", "plain"} {
		b.Run(format, func(b *testing.B) {
			a := NewAssembler(AssemblerConfig{}, nil, nil, nil, nil, nil)
			h := newHostState("h", false)
			pad := strings.Repeat("abcdefghijklmnopqrstuvwxyz", 5)[:112]
			payloads := make([][]byte, 1024)
			for i := range payloads {
				if format == "extended" {
					payloads[i] = []byte("6," + strconv.Itoa(i) + "," + strconv.Itoa(1000+i) + ",-;host1 " + pad + "\n")
				} else {
					payloads[i] = []byte("[    1." + strconv.Itoa(100000+i) + "] host1 " + pad + "\n")
				}
			}
			var out lineBuf
			now := time.Unix(1_700_000_000, 0)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				j := i % len(payloads)
				if j == 0 {
					h = newHostState("h", false) // keep seq and time increasing
					h.started, h.boot = true, 1
				}
				a.Process(h, payloads[j], now, &out)
				if len(out.lines) >= 64 {
					clear(out.lines)
					out.lines = out.lines[:0]
				}
			}
		})
	}
}
