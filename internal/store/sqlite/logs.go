package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"netboot/internal/store"
)

// Netconsole lines are stored in chunks: one row per (host, boot) per
// appended batch, the lines encoded with store.AppendLogChunk. At hundreds
// of thousands of lines per second a row per line would cost more CPU than
// the whole receive path; chunks keep it to a few rows per second per host.
// Filters on text and level run after decoding; host, boot and time select
// chunks through the indexes.
func init() {
	registerSchema("logs", `
CREATE TABLE IF NOT EXISTS log_chunks (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	host      TEXT    NOT NULL,
	boot_id   INTEGER NOT NULL,
	first     INTEGER NOT NULL, -- unix ns of the first line
	last      INTEGER NOT NULL, -- unix ns of the last line
	lines     INTEGER NOT NULL,
	bytes     INTEGER NOT NULL, -- encoded size
	min_level INTEGER NOT NULL, -- most severe known level in the chunk, 8 if none
	data      BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS log_chunks_host ON log_chunks (host, boot_id, id);
CREATE INDEX IF NOT EXISTS log_chunks_last ON log_chunks (last);
`)
}

var _ store.LogStore = (*DB)(nil)

type logGroup struct {
	host  string
	boot  int64
	lines []store.LogLine
}

// groupLogs splits lines into groups of one host and boot, keeping order
// within each group. Consecutive lines of the same group share the input's
// backing array when the input is already grouped; otherwise lines are
// copied once into scratch.
func groupLogs(lines []store.LogLine, scratch []store.LogLine) []logGroup {
	type key struct {
		host string
		boot int64
	}
	idx := map[key]int{}
	var groups []logGroup
	counts := []int{}
	order := make([]int32, len(lines))
	for i := range lines {
		k := key{lines[i].Host, lines[i].BootID}
		g, ok := idx[k]
		if !ok {
			g = len(groups)
			idx[k] = g
			groups = append(groups, logGroup{host: k.host, boot: k.boot})
			counts = append(counts, 0)
		}
		order[i] = int32(g)
		counts[g]++
	}
	off := 0
	for g := range groups {
		groups[g].lines = scratch[off : off : off+counts[g]]
		off += counts[g]
	}
	for i := range lines {
		g := &groups[order[i]]
		g.lines = append(g.lines, lines[i])
	}
	return groups
}

// linePool recycles the grouping scratch space of AppendLogs (a batch is
// typically 16k lines: a fresh slice per batch would be most of the
// collector's garbage).
var linePool sync.Pool

func scratchLines(n int) *[]store.LogLine {
	if p, ok := linePool.Get().(*[]store.LogLine); ok && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	s := make([]store.LogLine, n)
	return &s
}

func releaseLines(p *[]store.LogLine) {
	clear(*p) // drop the texts
	linePool.Put(p)
}

// AppendLogs implements store.LogStore: one transaction, one row per host
// and boot.
func (s *DB) AppendLogs(ctx context.Context, lines []store.LogLine) error {
	if len(lines) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("append logs: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO log_chunks (host, boot_id, first, last, lines, bytes, min_level, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("append logs: %w", err)
	}
	defer stmt.Close()
	scratch := scratchLines(len(lines))
	defer releaseLines(scratch)
	var buf []byte
	for _, g := range groupLogs(lines, *scratch) {
		first, last := g.lines[0].Time, g.lines[len(g.lines)-1].Time
		if last.Before(first) {
			last = first
		}
		buf = store.AppendLogChunk(buf[:0], first, g.lines)
		if _, err := stmt.ExecContext(ctx, g.host, g.boot, first.UnixNano(), last.UnixNano(),
			len(g.lines), len(buf), minLevel(g.lines), buf); err != nil {
			return fmt.Errorf("append logs for %s: %w", g.host, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("append logs: commit: %w", err)
	}
	return nil
}

func minLevel(lines []store.LogLine) int {
	m := 8
	for _, l := range lines {
		if l.Level >= 0 && int(l.Level) < m {
			m = int(l.Level)
		}
	}
	return m
}

// QueryLogs implements store.LogStore.
func (s *DB) QueryLogs(ctx context.Context, q store.LogQuery) ([]store.LogLine, error) {
	query := `SELECT host, boot_id, first, data FROM log_chunks WHERE host = ?`
	args := []any{q.Host}
	if q.BootID != 0 {
		query += ` AND boot_id = ?`
		args = append(args, q.BootID)
	}
	if !q.Since.IsZero() {
		query += ` AND last >= ?`
		args = append(args, q.Since.UnixNano())
	}
	if q.HasMaxLevel {
		query += ` AND min_level <= ?`
		args = append(args, q.MaxLevel)
	}
	rows, err := s.db.QueryContext(ctx, query+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("query logs of %s: %w", q.Host, err)
	}
	defer rows.Close()
	var out []store.LogLine
	for rows.Next() {
		if out, err = scanChunk(rows, q, out); err != nil {
			return nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query logs of %s: %w", q.Host, err)
	}
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[len(out)-q.Limit:]
	}
	return out, nil
}

func scanChunk(rows *sql.Rows, q store.LogQuery, out []store.LogLine) ([]store.LogLine, error) {
	var host string
	var boot, first int64
	var data []byte
	if err := rows.Scan(&host, &boot, &first, &data); err != nil {
		return nil, fmt.Errorf("query logs of %s: %w", q.Host, err)
	}
	err := store.DecodeLogChunk(data, time.Unix(0, first), func(l store.LogLine) bool {
		if keepLine(&l, q) {
			l.Host, l.BootID = host, boot
			out = append(out, l)
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("query logs of %s: %w", q.Host, err)
	}
	return out, nil
}

func keepLine(l *store.LogLine, q store.LogQuery) bool {
	if !q.Since.IsZero() && l.Time.Before(q.Since) {
		return false
	}
	if q.HasMaxLevel && (l.Level < 0 || l.Level > q.MaxLevel) {
		return false
	}
	return q.Match == nil || q.Match(l.Text)
}

// LogBoots implements store.LogStore.
func (s *DB) LogBoots(ctx context.Context, host string) ([]store.LogBoot, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT boot_id, MIN(first), MAX(last), SUM(lines) FROM log_chunks
		WHERE host = ? GROUP BY boot_id ORDER BY MIN(id)`, host)
	if err != nil {
		return nil, fmt.Errorf("list log boots of %s: %w", host, err)
	}
	defer rows.Close()
	var out []store.LogBoot
	for rows.Next() {
		var b store.LogBoot
		var first, last int64
		if err := rows.Scan(&b.BootID, &first, &last, &b.Lines); err != nil {
			return nil, fmt.Errorf("list log boots of %s: %w", host, err)
		}
		b.First, b.Last = time.Unix(0, first).UTC(), time.Unix(0, last).UTC()
		out = append(out, b)
	}
	return out, rows.Err()
}

// LastLogBoot implements store.LogStore.
func (s *DB) LastLogBoot(ctx context.Context, host string) (int64, error) {
	var id int64
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(boot_id), 0) FROM log_chunks WHERE host = ?`, host).Scan(&id); err != nil {
		return 0, fmt.Errorf("last log boot of %s: %w", host, err)
	}
	return id, nil
}

// PruneLogs implements store.LogStore.
func (s *DB) PruneLogs(ctx context.Context, olderThan time.Time, maxBytes int64) (int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("prune logs: %w", err)
	}
	defer tx.Rollback()
	var deleted int64
	if !olderThan.IsZero() {
		n, err := deleteChunks(ctx, tx, `last < ?`, olderThan.UnixNano())
		if err != nil {
			return 0, err
		}
		deleted += n
	}
	if maxBytes > 0 {
		cut, err := sizeCutoff(ctx, tx, maxBytes)
		if err != nil {
			return 0, err
		}
		if cut > 0 {
			n, err := deleteChunks(ctx, tx, `id <= ?`, cut)
			if err != nil {
				return 0, err
			}
			deleted += n
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("prune logs: commit: %w", err)
	}
	return deleted, nil
}

// deleteChunks deletes the chunks matching where and returns their line count.
func deleteChunks(ctx context.Context, tx *sql.Tx, where string, arg any) (int64, error) {
	var lines int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(SUM(lines), 0) FROM log_chunks WHERE `+where, arg).Scan(&lines); err != nil {
		return 0, fmt.Errorf("prune logs: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM log_chunks WHERE `+where, arg); err != nil {
		return 0, fmt.Errorf("prune logs: %w", err)
	}
	return lines, nil
}

// sizeCutoff returns the id of the newest chunk that must go so that the
// chunks after it total at most maxBytes; 0 if nothing must go.
func sizeCutoff(ctx context.Context, tx *sql.Tx, maxBytes int64) (int64, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, bytes FROM log_chunks ORDER BY id DESC`)
	if err != nil {
		return 0, fmt.Errorf("prune logs: %w", err)
	}
	defer rows.Close()
	var total int64
	for rows.Next() {
		var id, n int64
		if err := rows.Scan(&id, &n); err != nil {
			return 0, fmt.Errorf("prune logs: %w", err)
		}
		total += n
		if total > maxBytes {
			return id, nil
		}
	}
	return 0, rows.Err()
}

// LogStats implements store.LogStore.
func (s *DB) LogStats(ctx context.Context) (store.LogStats, error) {
	var st store.LogStats
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(lines), 0), COALESCE(SUM(bytes), 0) FROM log_chunks`).
		Scan(&st.Chunks, &st.Lines, &st.Bytes)
	if err != nil {
		return st, fmt.Errorf("log stats: %w", err)
	}
	return st, nil
}
