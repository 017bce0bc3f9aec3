package netconsole

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"netboot/internal/clock"
	"netboot/internal/store"
)

// writer batches lines and writes them to the store, one transaction per
// batch, from one goroutine. Readers block when Backlog batches are
// queued, which bounds memory.
type writer struct {
	cfg  Config
	deps Deps

	mu      sync.Mutex
	cur     []store.LogLine
	ch      chan []store.LogLine
	backlog atomic.Int64
	done    chan struct{}
	timer   clock.Timer
	stopped bool
	free    chan []store.LogLine // written batches, for reuse
}

func newWriter(cfg Config, deps Deps) *writer {
	return &writer{cfg: cfg, deps: deps, ch: make(chan []store.LogLine, cfg.Backlog), done: make(chan struct{}),
		free: make(chan []store.LogLine, cfg.Backlog+1)}
}

// add copies lines into the current batch.
func (w *writer) add(lines []store.LogLine) {
	if w.deps.Store == nil {
		return
	}
	w.backlog.Add(int64(len(lines)))
	w.mu.Lock()
	if w.cur == nil {
		w.cur = w.newBatch()
	}
	w.cur = append(w.cur, lines...)
	var full []store.LogLine
	if len(w.cur) >= w.cfg.FlushLines {
		full, w.cur = w.cur, nil
	}
	w.mu.Unlock()
	if full != nil {
		w.ch <- full
	}
}

// flushCur sends the partial batch.
func (w *writer) flushCur() {
	w.mu.Lock()
	full := w.cur
	w.cur = nil
	w.mu.Unlock()
	if len(full) > 0 {
		w.ch <- full
	}
}

// start runs the store goroutine and the flush timer; stop flushes
// everything and waits for the last write.
func (w *writer) start() (stop func()) {
	if w.deps.Store == nil {
		return func() {}
	}
	go w.loop()
	var tick func()
	tick = func() {
		w.flushCur()
		w.mu.Lock()
		defer w.mu.Unlock()
		if !w.stopped {
			w.timer = w.deps.Clock.AfterFunc(w.cfg.FlushInterval, tick)
		}
	}
	w.mu.Lock()
	w.timer = w.deps.Clock.AfterFunc(w.cfg.FlushInterval, tick)
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		w.stopped = true
		w.timer.Stop()
		w.mu.Unlock()
		w.flushCur()
		close(w.ch)
		<-w.done
	}
}

func (w *writer) newBatch() []store.LogLine {
	select {
	case b := <-w.free:
		return b
	default:
		return make([]store.LogLine, 0, w.cfg.FlushLines+256)
	}
}

func (w *writer) recycle(b []store.LogLine) {
	if cap(b) > 2*w.cfg.FlushLines {
		return
	}
	clear(b) // release the texts
	select {
	case w.free <- b[:0]:
	default:
	}
}

func (w *writer) loop() {
	defer close(w.done)
	lastPrune := w.deps.Clock.Now()
	for batch := range w.ch {
		w.write(batch)
		w.recycle(batch)
		if now := w.deps.Clock.Now(); now.Sub(lastPrune) >= w.cfg.PruneInterval {
			lastPrune = now
			w.prune(now)
		}
	}
}

func (w *writer) write(batch []store.LogLine) {
	ctx := context.Background()
	err := w.deps.Store.AppendLogs(ctx, batch)
	if err != nil {
		w.deps.Metrics.storeError()
		w.deps.Log.Warn("netconsole: storing log lines failed, retrying once", zap.Int("lines", len(batch)), zap.Error(err))
		err = w.deps.Store.AppendLogs(ctx, batch)
	}
	w.backlog.Add(-int64(len(batch)))
	w.deps.Metrics.setBacklog(w.backlog.Load())
	if err != nil {
		w.deps.Metrics.storeError()
		w.deps.Log.Error("netconsole: log lines lost: store failed twice", zap.Int("lines", len(batch)), zap.Error(err))
		return
	}
	w.deps.Metrics.stored(len(batch))
}

func (w *writer) prune(now time.Time) {
	if w.cfg.Retention <= 0 && w.cfg.MaxBytes <= 0 {
		return
	}
	var before time.Time
	if w.cfg.Retention > 0 {
		before = now.Add(-w.cfg.Retention)
	}
	n, err := w.deps.Store.PruneLogs(context.Background(), before, w.cfg.MaxBytes)
	if err != nil {
		w.deps.Log.Warn("netconsole: pruning old log lines failed", zap.Error(err))
		return
	}
	if n > 0 {
		w.deps.Log.Info("netconsole: pruned old log lines", zap.Int64("lines", n),
			zap.Duration("retention", w.cfg.Retention), zap.Int64("max_bytes", w.cfg.MaxBytes))
	}
}
