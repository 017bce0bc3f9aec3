package main

import (
	"context"
	"fmt"

	"netboot/internal/dashboard"
)

// setupDashboard mounts the read-only web dashboard (internal/dashboard) at
// "/" and "/static/". Call it before setupHTTP: the API, /metrics, /boot/
// and /files/ are more specific patterns and keep their paths. Owned by the
// dashboard part.
func (d *daemon) setupDashboard(context.Context) error {
	dash, err := dashboard.New(dashboard.Config{
		Inventory: d.cfg,
		Boots:     d.store,
		Logs:      d.store,
		Log:       d.log.Named("dashboard"),
		Clock:     d.clock,
		Metrics:   d.registry,
	})
	if err != nil {
		return fmt.Errorf("set up dashboard: %w", err)
	}
	d.mux.Handle("/static/", dash)
	d.mux.Handle("/", dash)
	return nil
}
