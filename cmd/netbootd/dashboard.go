package main

import (
	"context"
	"fmt"

	"netboot/internal/boot"
	"netboot/internal/dashboard"
)

// setupDashboard mounts the read-only web dashboard (internal/dashboard) at
// "/" and "/static/". Call it before setupHTTP: the API, /metrics, /boot/
// and /files/ are more specific patterns and keep their paths. Owned by the
// dashboard part.
func (d *daemon) setupDashboard(context.Context) error {
	cat, err := boot.NewCatalogue(d.cfg.Signatures)
	if err != nil {
		return fmt.Errorf("set up dashboard: %w", err)
	}
	dash, err := dashboard.New(dashboard.Config{
		Inventory: d.cfg,
		Catalogue: cat,
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
