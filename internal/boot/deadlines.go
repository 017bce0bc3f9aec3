package boot

import (
	"time"

	"netboot/internal/config"
	"netboot/internal/event"
)

// DefaultDeadlines is how long a boot may stay at each stage before it is
// stuck, when the host's class does not say otherwise (config
// classes.<name>.deadlines). A deadline is counted from the moment the stage
// was reached; reaching any later stage stops it. "ready" has none.
//
// The figures allow for slow links and Raspberry Pi firmware (dhcp,
// firmware, kernel, initramfs), a kernel rbd map that waits ~30 s for a
// stale lock (root-map), and smoke checks that retry for up to their own
// 2 m deadline (userspace).
var DefaultDeadlines = map[event.Stage]time.Duration{
	event.StageDHCP:        60 * time.Second,
	event.StageFirmware:    90 * time.Second,
	event.StageKernel:      120 * time.Second,
	event.StageInitramfs:   120 * time.Second,
	event.StageKernelUp:    60 * time.Second,
	event.StageInit:        30 * time.Second,
	event.StageNetwork:     60 * time.Second,
	event.StageRootPrepare: 60 * time.Second,
	event.StageRootMap:     90 * time.Second,
	event.StageRootMount:   60 * time.Second,
	event.StageSwitchRoot:  180 * time.Second,
	event.StageUserspace:   300 * time.Second,
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
