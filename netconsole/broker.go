package netconsole

import (
	"sync"
	"sync/atomic"

	"netboot/internal/store"
)

// Broker fans received lines out to live subscribers (log followers),
// by host. Publishing never blocks: a subscriber that does not keep up
// loses lines, and the loss is counted on the subscription and in the
// metrics. A nil *Broker publishes nothing.
type Broker struct {
	m    *Metrics
	n    atomic.Int32
	mu   sync.RWMutex
	subs map[string]map[*Subscription]struct{}
}

// Subscription receives the lines of one host on C.
type Subscription struct {
	C       <-chan store.LogLine
	c       chan store.LogLine
	host    string
	dropped atomic.Int64
}

// Dropped is how many lines this subscriber missed because it was slow.
func (s *Subscription) Dropped() int64 { return s.dropped.Load() }

// NewBroker returns a broker; m may be nil.
func NewBroker(m *Metrics) *Broker {
	return &Broker{m: m, subs: map[string]map[*Subscription]struct{}{}}
}

// Subscribe starts delivering host's lines; buf is the channel capacity
// (default 1024).
func (b *Broker) Subscribe(host string, buf int) *Subscription {
	if buf <= 0 {
		buf = 1024
	}
	c := make(chan store.LogLine, buf)
	s := &Subscription{C: c, c: c, host: host}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.subs[host] == nil {
		b.subs[host] = map[*Subscription]struct{}{}
	}
	b.subs[host][s] = struct{}{}
	b.n.Add(1)
	return s
}

// Unsubscribe stops delivery and closes s.C.
func (b *Broker) Unsubscribe(s *Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[s.host][s]; !ok {
		return
	}
	delete(b.subs[s.host], s)
	if len(b.subs[s.host]) == 0 {
		delete(b.subs, s.host)
	}
	b.n.Add(-1)
	close(s.c)
}

// Publish delivers lines to the subscribers of their hosts.
func (b *Broker) Publish(lines []store.LogLine) {
	if b == nil || b.n.Load() == 0 {
		return
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, l := range lines {
		for s := range b.subs[l.Host] {
			select {
			case s.c <- l:
			default:
				s.dropped.Add(1)
				b.m.laggedLines(1)
			}
		}
	}
}
