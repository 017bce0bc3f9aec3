package main

import (
	"context"
	"fmt"

	"netboot/internal/api"
	"netboot/internal/boot"
)

var _ api.BootService = (*boot.Tracker)(nil)

// setupBoot wires the boot tracker (internal/boot): it becomes the event
// sink every other part emits to (d.events) and the API's BootService.
// Netconsole reaches its ObserveLine by asserting d.events to
// netconsole.LineObserver. Owned by the outcomes part.
func (d *daemon) setupBoot(ctx context.Context) error {
	cfg := boot.Config{
		Inventory: d.cfg, Store: d.store, Log: d.log.Named("boot"), Clock: d.clock, Metrics: d.registry,
	}
	// ceph-osd-up smoke checks get their Ceph connection from setupRBD.
	tr, err := boot.New(ctx, cfg)
	if err != nil {
		return fmt.Errorf("start boot tracker: %w", err)
	}
	d.events = tr
	d.apiDeps.Boots = tr
	d.closers = append(d.closers, tr.Close)
	return nil
}
