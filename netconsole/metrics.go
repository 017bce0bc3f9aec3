package netconsole

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the collector's Prometheus metrics. A nil *Metrics is valid
// and records nothing (unit tests).
type Metrics struct {
	datagrams   *prometheus.CounterVec
	byResult    map[Result]prometheus.Counter
	bytes       prometheus.Counter
	linesStored prometheus.Counter
	storeErrors prometheus.Counter
	fragLostB   *prometheus.CounterVec
	sessions    *prometheus.CounterVec
	kernelDrops prometheus.Counter
	hosts       prometheus.Gauge
	backlog     prometheus.Gauge
	lagged      prometheus.Counter
}

// NewMetrics registers the collector's metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		datagrams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netboot_netconsole_datagrams_total",
			Help: "Netconsole datagrams received, by result (parsed, reassembled, dropped, unknown_host, malformed).",
		}, []string{"result"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "netboot_netconsole_bytes_total", Help: "Netconsole payload bytes received.",
		}),
		linesStored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "netboot_netconsole_lines_stored_total", Help: "Log lines written to the store.",
		}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "netboot_netconsole_store_errors_total", Help: "Batches the store failed to write (lines retried once, then counted lost).",
		}),
		fragLostB: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netboot_netconsole_fragment_bytes_lost_total",
			Help: "Bytes of fragmented records never received, by reason (timeout, evicted, memory, too-long, shutdown).",
		}, []string{"reason"}),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netboot_netconsole_boots_detected_total",
			Help: "New boots detected in netconsole streams, by signal (seq-reset, time-backwards, banner, tracker).",
		}, []string{"reason"}),
		kernelDrops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "netboot_netconsole_kernel_drops_total",
			Help: "Datagrams the kernel dropped because the socket receive buffer was full (SO_RXQ_OVFL).",
		}),
		hosts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "netboot_netconsole_hosts", Help: "Sources with per-host state held.",
		}),
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "netboot_netconsole_store_backlog_lines", Help: "Lines received but not yet written to the store.",
		}),
		lagged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "netboot_netconsole_stream_lines_dropped_total", Help: "Lines not delivered to slow live subscribers.",
		}),
	}
	cs := []prometheus.Collector{m.datagrams, m.bytes, m.linesStored, m.storeErrors, m.fragLostB, m.sessions, m.kernelDrops, m.hosts, m.backlog, m.lagged}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register netconsole metrics: %w", err)
		}
	}
	m.byResult = map[Result]prometheus.Counter{}
	for _, r := range results {
		m.byResult[r] = m.datagrams.WithLabelValues(string(r))
	}
	return m, nil
}

// tally counts one reader's datagrams between metric updates, so that the
// hot path touches no shared cache line per datagram.
type tally struct {
	n     [5]int
	bytes int
}

var resultIndex = map[Result]int{ResultParsed: 0, ResultReassembled: 1, ResultDropped: 2, ResultUnknownHost: 3, ResultMalformed: 4}

func (t *tally) add(r Result, size int) {
	switch r {
	case ResultParsed:
		t.n[0]++
	case ResultReassembled:
		t.n[1]++
	case ResultDropped:
		t.n[2]++
	case ResultUnknownHost:
		t.n[3]++
	case ResultMalformed:
		t.n[4]++
	}
	t.bytes += size
}

// flush adds the tally to the metrics and resets it.
func (m *Metrics) flush(t *tally) {
	if m != nil {
		for r, i := range resultIndex {
			if t.n[i] > 0 {
				m.byResult[r].Add(float64(t.n[i]))
			}
		}
		if t.bytes > 0 {
			m.bytes.Add(float64(t.bytes))
		}
	}
	*t = tally{}
}

func (m *Metrics) fragLost(reason string, n int) {
	if m != nil && n > 0 {
		m.fragLostB.WithLabelValues(reason).Add(float64(n))
	}
}

func (m *Metrics) session(reason string) {
	if m != nil {
		m.sessions.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) stored(n int) {
	if m != nil {
		m.linesStored.Add(float64(n))
	}
}

func (m *Metrics) storeError() {
	if m != nil {
		m.storeErrors.Inc()
	}
}

func (m *Metrics) kernelDropped(n uint64) {
	if m != nil && n > 0 {
		m.kernelDrops.Add(float64(n))
	}
}

func (m *Metrics) setHosts(n int) {
	if m != nil {
		m.hosts.Set(float64(n))
	}
}

func (m *Metrics) setBacklog(n int64) {
	if m != nil {
		m.backlog.Set(float64(n))
	}
}

func (m *Metrics) laggedLines(n int) {
	if m != nil {
		m.lagged.Add(float64(n))
	}
}
