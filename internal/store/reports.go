package store

import (
	"context"
	"time"
)

// Expectation is an announced reboot (POST /api/v1/hosts/{name}/reboots)
// waiting for the host's next boot attempt. Baseline is the tracker's JSON
// of the smoke results taken before the reboot.
type Expectation struct {
	ID        int64
	Host      string
	Announced time.Time
	Deadline  time.Time
	Baseline  []byte
}

// Delivery is one webhook delivery, kept so that failed ones are visible.
type Delivery struct {
	ID       int64     `json:"id"`
	Time     time.Time `json:"time"`
	URL      string    `json:"url"`
	Event    string    `json:"event"`
	Host     string    `json:"host"`
	BootID   int64     `json:"boot_id"`
	Attempts int       `json:"attempts"`
	OK       bool      `json:"ok"`
	Error    string    `json:"error,omitempty"`
	Payload  []byte    `json:"-"`
}

// Reports persists what the boot tracker needs beyond boots and events:
// pending reboot announcements and webhook deliveries. Owned by the
// outcomes part; the tracker asserts the Store to it.
type Reports interface {
	// AddExpectation inserts x, assigning x.ID.
	AddExpectation(ctx context.Context, x *Expectation) error
	// DeleteExpectation removes an expectation once a boot answered it or it
	// was judged skipped.
	DeleteExpectation(ctx context.Context, id int64) error
	// Expectations returns every pending expectation, oldest first.
	Expectations(ctx context.Context) ([]Expectation, error)
	// AddDelivery records one webhook delivery (after its last attempt).
	AddDelivery(ctx context.Context, d *Delivery) error
	// Deliveries returns the newest deliveries first; failedOnly filters.
	Deliveries(ctx context.Context, failedOnly bool, limit int) ([]Delivery, error)
}
