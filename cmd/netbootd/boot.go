package main

import "context"

// setupBoot wires the boot tracker (internal/boot). Owned by the outcomes part.
func (d *daemon) setupBoot(context.Context) error { return nil }
