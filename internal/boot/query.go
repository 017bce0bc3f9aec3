package boot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"netboot/internal/store"
)

// publish sends a report change to the subscribers (dropping it for a
// subscriber whose channel is full).
func (t *Tracker) publish(r Report) {
	t.cmu.Lock()
	defer t.cmu.Unlock()
	for ch := range t.subs {
		select {
		case ch <- r:
		default:
		}
	}
}

// notify wakes every Wait.
func (t *Tracker) notify() {
	t.cmu.Lock()
	close(t.changed)
	t.changed = make(chan struct{})
	t.cmu.Unlock()
}

func (t *Tracker) changes() <-chan struct{} {
	t.cmu.Lock()
	defer t.cmu.Unlock()
	return t.changed
}

// Subscribe returns a channel of report changes (every host) until cancel
// is called. A slow reader misses changes rather than blocking the tracker.
func (t *Tracker) Subscribe(buffer int) (<-chan Report, func()) {
	ch := make(chan Report, max(buffer, 1))
	t.cmu.Lock()
	t.subs[ch] = struct{}{}
	t.cmu.Unlock()
	return ch, func() {
		t.cmu.Lock()
		delete(t.subs, ch)
		t.cmu.Unlock()
	}
}

// decode turns a stored boot into its report.
func decode(b store.Boot) (Report, error) {
	var r Report
	if len(b.State) == 0 {
		return Report{Host: b.Host, BootID: b.ID, Seq: b.Seq, Started: b.Started, Updated: b.Updated, Ended: b.Ended,
			Outcome: b.Outcome, Reason: b.Reason, LastStage: b.Stage, Stages: []StageMark{}}, nil
	}
	if err := json.Unmarshal(b.State, &r); err != nil {
		return r, fmt.Errorf("decode boot %d: %w", b.ID, err)
	}
	r.BootID, r.Seq = b.ID, b.Seq
	return r, nil
}

// Reports returns host's reports, newest first (limit <= 0: all).
func (t *Tracker) Reports(ctx context.Context, host string, limit int) ([]Report, error) {
	boots, err := t.cfg.Store.ListBoots(ctx, host, limit)
	if err != nil {
		return nil, fmt.Errorf("list reports of %s: %w", host, err)
	}
	out := make([]Report, 0, len(boots))
	for _, b := range boots {
		r, err := decode(b)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Report returns the report of boot id.
func (t *Tracker) Report(ctx context.Context, id int64) (Report, error) {
	b, err := t.cfg.Store.GetBoot(ctx, id)
	if err != nil {
		return Report{}, fmt.Errorf("get report: %w", err)
	}
	return decode(b)
}

// latestScan bounds how many recent boots Latest looks through.
const latestScan = 20

// Latest returns host's newest report whose MatchTime is at or after since
// (zero since: the newest report). It wraps store.ErrNotFound if none.
func (t *Tracker) Latest(ctx context.Context, host string, since time.Time) (Report, error) {
	reports, err := t.Reports(ctx, host, latestScan)
	if err != nil {
		return Report{}, err
	}
	for _, r := range reports {
		if !r.MatchTime().Before(since) {
			return r, nil
		}
	}
	return Report{}, fmt.Errorf("latest report of %s since %s: %w", host, since.Format(time.RFC3339), store.ErrNotFound)
}

// Wait blocks until host has a report since `since` with a final outcome,
// or ctx ends. On ctx's end it returns the newest such report seen (it may
// be in progress) and ctx's error, or an error wrapping store.ErrNotFound
// if there is none.
func (t *Tracker) Wait(ctx context.Context, host string, since time.Time) (Report, error) {
	for {
		ch := t.changes()
		r, err := t.Latest(ctx, host, since)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return r, err
		}
		if err == nil && r.Terminal() {
			return r, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if err != nil {
				return r, err
			}
			return r, ctx.Err()
		}
	}
}

// WaitBoot blocks until boot id has a final outcome or ctx ends; on ctx's
// end it returns the report as it is and ctx's error.
func (t *Tracker) WaitBoot(ctx context.Context, id int64) (Report, error) {
	for {
		ch := t.changes()
		r, err := t.Report(ctx, id)
		if err != nil || r.Terminal() {
			return r, err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return r, ctx.Err()
		}
	}
}

// Deliveries returns recorded webhook deliveries, newest first.
func (t *Tracker) Deliveries(ctx context.Context, failedOnly bool, limit int) ([]store.Delivery, error) {
	if t.reports == nil {
		return nil, nil
	}
	return t.reports.Deliveries(ctx, failedOnly, limit)
}
