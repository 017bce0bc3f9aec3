// Package eventtest has test doubles for event sinks.
package eventtest

import (
	"sync"

	"netboot/internal/event"
)

// Recorder is an event.Sink that keeps every event for assertions. The zero
// value is ready to use; it is safe for concurrent use.
type Recorder struct {
	mu     sync.Mutex
	events []event.Event
}

// Emit implements event.Sink.
func (r *Recorder) Emit(e event.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// Events returns a copy of the events emitted so far, in order.
func (r *Recorder) Events() []event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event.Event(nil), r.events...)
}
