package rbd

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the hand-over's Prometheus metrics.
type Metrics struct {
	LockBreaks       prometheus.Counter
	Refusals         *prometheus.CounterVec // reason
	BlocklistChanges *prometheus.CounterVec // op=add|remove
	PrepareSeconds   *prometheus.HistogramVec
	CephErrors       *prometheus.CounterVec // call
}

// NewMetrics creates the metrics and registers them on reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		LockBreaks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "netboot_rbd_lock_breaks_total", Help: "Exclusive locks broken on behalf of a booting host."}),
		Refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netboot_rbd_refusals_total", Help: "Root prepares refused, by reason."}, []string{"reason"}),
		BlocklistChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netboot_rbd_blocklist_changes_total", Help: "OSD blocklist entries added or removed."}, []string{"op"}),
		PrepareSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "netboot_rbd_prepare_seconds", Help: "Root prepare latency by result (ok, refused, error).",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60}}, []string{"result"}),
		CephErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netboot_rbd_ceph_errors_total", Help: "Ceph calls that failed or timed out, by call."}, []string{"call"}),
	}
	for _, r := range Reasons() {
		m.Refusals.WithLabelValues(string(r))
	}
	m.BlocklistChanges.WithLabelValues("add")
	m.BlocklistChanges.WithLabelValues("remove")
	if reg != nil {
		reg.MustRegister(m.LockBreaks, m.Refusals, m.BlocklistChanges, m.PrepareSeconds, m.CephErrors)
	}
	return m
}
