package boot

import (
	"time"

	"netboot/internal/config"
	"netboot/internal/event"
)

// DefaultDeadlines is how long a boot may take to reach each stage from
// the stage before it, when the host's class does not say otherwise (config
// classes.<name>.deadlines, e.g. "root-map: 90s" = root-map must follow
// root-prepare within 90s). While a boot is at stage S, the deadline of the
// stage after S runs; reaching any later stage (stages may be skipped)
// stops it. A boot that misses it is stuck at S. "dhcp" has none: an
// attempt starts there.
//
// The figures allow for slow links and Raspberry Pi firmware (firmware,
// kernel, initramfs), a kernel rbd map that waits ~30 s for a stale lock
// (root-map), and smoke checks that retry for up to their own 2 m deadline
// (ready).
var DefaultDeadlines = map[event.Stage]time.Duration{
	event.StageFirmware:    60 * time.Second,
	event.StageKernel:      90 * time.Second,
	event.StageInitramfs:   120 * time.Second,
	event.StageKernelUp:    120 * time.Second,
	event.StageInit:        60 * time.Second,
	event.StageNetwork:     60 * time.Second,
	event.StageRootPrepare: 60 * time.Second,
	event.StageRootMap:     90 * time.Second,
	event.StageRootMount:   60 * time.Second,
	event.StageSwitchRoot:  60 * time.Second,
	event.StageUserspace:   180 * time.Second,
	event.StageReady:       300 * time.Second,
}

// deadlinesFor merges a class's deadlines over the defaults.
func deadlinesFor(cl config.Class) map[string]time.Duration {
	out := make(map[string]time.Duration, len(DefaultDeadlines))
	for s, d := range DefaultDeadlines {
		out[s.String()] = d
	}
	for name, d := range cl.Deadlines {
		out[name] = d.D()
	}
	return out
}
