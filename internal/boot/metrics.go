package boot

import (
	"github.com/prometheus/client_golang/prometheus"

	"netboot/internal/event"
)

// metrics are the tracker's Prometheus series (README "Metrics").
type metrics struct {
	boots       *prometheus.CounterVec
	stage       *prometheus.GaugeVec
	lastSuccess *prometheus.GaugeVec
	stuck       *prometheus.CounterVec
	skipped     *prometheus.CounterVec
	regressions *prometheus.CounterVec
	smoke       *prometheus.CounterVec
	signatures  *prometheus.CounterVec
	events      *prometheus.CounterVec
	dropped     *prometheus.CounterVec
	webhooks    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		boots: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "netboot_boots_total",
			Help: "Boot attempts that ended, by host, class and outcome."}, []string{"host", "class", "outcome"}),
		stage: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "netboot_boot_stage",
			Help: "1 for the stage the host's current boot attempt has reached (0-13 order in the stage_index label's value)."},
			[]string{"host", "stage", "stage_index"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "netboot_boot_last_success_timestamp_seconds",
			Help: "Unix time the host's last boot succeeded."}, []string{"host"}),
		stuck: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "netboot_boots_stuck_total",
			Help: "Boot attempts judged stuck, by host and the stage they stopped at."}, []string{"host", "stage"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "netboot_reboots_skipped_total",
			Help: "Announced reboots that started no boot attempt before their deadline."}, []string{"host"}),
		regressions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "netboot_smoke_regressions_total",
			Help: "Smoke checks that passed before an announced reboot and failed after it."}, []string{"host", "check"}),
		smoke: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "netboot_smoke_checks_total",
			Help: "Smoke check results, by class, check and result (pass or fail)."}, []string{"class", "check", "result"}),
		signatures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "netboot_failure_signatures_total",
			Help: "Netconsole lines that matched a failure signature."}, []string{"signature"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "netboot_tracker_events_total",
			Help: "Events recorded by the boot tracker, by kind."}, []string{"kind"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "netboot_tracker_dropped_total",
			Help: "Events or netconsole lines the tracker dropped because its queue was full, or refused (reason)."},
			[]string{"reason"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "netboot_webhook_deliveries_total",
			Help: "Webhook deliveries after their last attempt, by result (ok or failed)."}, []string{"result"}),
	}
	if reg != nil {
		for _, c := range m.collectors() {
			reg.MustRegister(c)
		}
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.boots, m.stage, m.lastSuccess, m.stuck, m.skipped, m.regressions,
		m.smoke, m.signatures, m.events, m.dropped, m.webhooks}
}

// setStage points the host's stage gauge at s.
func (m *metrics) setStage(host string, s event.Stage) {
	m.stage.DeletePartialMatch(prometheus.Labels{"host": host})
	if s != event.StageNone {
		m.stage.WithLabelValues(host, s.String(), itoa(int(s))).Set(1)
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return string(rune('0'+i/10)) + string(rune('0'+i%10))
}
