// Package store defines the persistence interfaces of netbootd.
//
// Every part of the service talks to these small interfaces, never to a
// database directly. The default implementation is the embedded SQLite store
// in store/sqlite; a PostgreSQL implementation shared by several netbootd
// instances is the planned next step (see docs/architecture.md), which is why
// nothing outside this package may depend on SQLite specifics.
//
// Each part owns the interface for its own data in a file of its own
// (boots and events here; logs.go, rbd.go, reports.go by their parts).
package store

import (
	"context"
	"errors"
	"time"

	"netboot/internal/event"
)

// ErrNotFound is returned when a requested record does not exist.
var ErrNotFound = errors.New("not found")

// Outcome values of a boot attempt (PRODUCT.md "Outcome of a boot").
const (
	OutcomeInProgress = "in-progress"
	OutcomeSucceeded  = "succeeded"
	OutcomeFailed     = "failed"
	OutcomeStuck      = "stuck"
	OutcomeSkipped    = "skipped"
)

// Boot is one boot attempt of one host. The indexed columns are what lists
// and filters need; State is the tracker's own serialized state (JSON),
// opaque to the store.
type Boot struct {
	ID      int64       `json:"id"`
	Host    string      `json:"host"`
	Seq     int         `json:"seq"` // 1 for the host's first recorded boot
	Started time.Time   `json:"started"`
	Updated time.Time   `json:"updated"`
	Ended   time.Time   `json:"ended,omitzero"`
	Stage   event.Stage `json:"stage"`   // last stage reached
	Outcome string      `json:"outcome"` // one of the Outcome constants
	Reason  string      `json:"reason,omitempty"`
	State   []byte      `json:"-"`
}

// Store is everything netbootd persists. Parts that need more (logs, RBD
// clients, reports) assert the implementation to their own interfaces.
type Store interface {
	Boots
	Events
	Close() error
}

// Boots persists boot attempts.
type Boots interface {
	// CreateBoot inserts b, assigning ID and Seq.
	CreateBoot(ctx context.Context, b *Boot) error
	// UpdateBoot overwrites the boot with b.ID.
	UpdateBoot(ctx context.Context, b *Boot) error
	GetBoot(ctx context.Context, id int64) (Boot, error)
	// ListBoots returns a host's boots, newest first; limit <= 0 means all.
	ListBoots(ctx context.Context, host string, limit int) ([]Boot, error)
	// LatestBoots returns the newest boot of every host that has one.
	LatestBoots(ctx context.Context) (map[string]Boot, error)
	// OpenBoots returns every boot still in progress (to resume after a restart).
	OpenBoots(ctx context.Context) ([]Boot, error)
}

// Events persists the events of boot attempts.
type Events interface {
	// AddEvent inserts e, assigning e.ID.
	AddEvent(ctx context.Context, e *event.Event) error
	// BootEvents returns a boot's events in the order they were recorded.
	BootEvents(ctx context.Context, bootID int64) ([]event.Event, error)
	// HostEvents returns a host's events at or after since, oldest first;
	// limit <= 0 means all.
	HostEvents(ctx context.Context, host string, since time.Time, limit int) ([]event.Event, error)
}
