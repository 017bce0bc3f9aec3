package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"netboot/internal/event"
	"netboot/internal/store"
)

func init() {
	registerSchema("boots", `
CREATE TABLE IF NOT EXISTS boots (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	host     TEXT    NOT NULL,
	seq      INTEGER NOT NULL,
	started  INTEGER NOT NULL,
	updated  INTEGER NOT NULL,
	ended    INTEGER NOT NULL DEFAULT 0,
	stage    TEXT    NOT NULL DEFAULT '',
	outcome  TEXT    NOT NULL,
	reason   TEXT    NOT NULL DEFAULT '',
	state    BLOB,
	UNIQUE (host, seq)
);
CREATE INDEX IF NOT EXISTS boots_outcome ON boots (outcome);
CREATE TABLE IF NOT EXISTS events (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	boot_id INTEGER NOT NULL DEFAULT 0,
	host    TEXT    NOT NULL,
	time    INTEGER NOT NULL,
	kind    TEXT    NOT NULL,
	stage   TEXT    NOT NULL DEFAULT '',
	failed  INTEGER NOT NULL DEFAULT 0,
	message TEXT    NOT NULL DEFAULT '',
	attrs   TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_boot ON events (boot_id, id);
CREATE INDEX IF NOT EXISTS events_host ON events (host, time);
`)
}

var _ store.Store = (*DB)(nil)

const bootColumns = `id, host, seq, started, updated, ended, stage, outcome, reason, state`

// CreateBoot implements store.Boots.
func (s *DB) CreateBoot(ctx context.Context, b *store.Boot) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create boot: %w", err)
	}
	defer tx.Rollback()
	var seq int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) + 1 FROM boots WHERE host = ?`, b.Host).Scan(&seq); err != nil {
		return fmt.Errorf("create boot: %w", err)
	}
	res, err := tx.ExecContext(ctx,
		`INSERT INTO boots (host, seq, started, updated, ended, stage, outcome, reason, state) VALUES (?,?,?,?,?,?,?,?,?)`,
		b.Host, seq, unixMilli(b.Started), unixMilli(b.Updated), unixMilli(b.Ended), b.Stage.String(), b.Outcome, b.Reason, b.State)
	if err != nil {
		return fmt.Errorf("create boot: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return fmt.Errorf("create boot: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create boot: %w", err)
	}
	b.ID, b.Seq = id, seq
	return nil
}

// UpdateBoot implements store.Boots.
func (s *DB) UpdateBoot(ctx context.Context, b *store.Boot) error {
	res, err := s.db.ExecContext(ctx,
		`UPDATE boots SET updated = ?, ended = ?, stage = ?, outcome = ?, reason = ?, state = ? WHERE id = ?`,
		unixMilli(b.Updated), unixMilli(b.Ended), b.Stage.String(), b.Outcome, b.Reason, b.State, b.ID)
	if err != nil {
		return fmt.Errorf("update boot %d: %w", b.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("update boot %d: %w", b.ID, store.ErrNotFound)
	}
	return nil
}

// GetBoot implements store.Boots.
func (s *DB) GetBoot(ctx context.Context, id int64) (store.Boot, error) {
	row := s.db.QueryRowContext(ctx, `SELECT `+bootColumns+` FROM boots WHERE id = ?`, id)
	b, err := scanBoot(row)
	if errors.Is(err, sql.ErrNoRows) {
		return b, fmt.Errorf("get boot %d: %w", id, store.ErrNotFound)
	}
	return b, err
}

// ListBoots implements store.Boots.
func (s *DB) ListBoots(ctx context.Context, host string, limit int) ([]store.Boot, error) {
	if limit <= 0 {
		limit = -1
	}
	return s.queryBoots(ctx, `SELECT `+bootColumns+` FROM boots WHERE host = ? ORDER BY seq DESC LIMIT ?`, host, limit)
}

// LatestBoots implements store.Boots.
func (s *DB) LatestBoots(ctx context.Context) (map[string]store.Boot, error) {
	boots, err := s.queryBoots(ctx, `SELECT b.id, b.host, b.seq, b.started, b.updated, b.ended, b.stage, b.outcome, b.reason, b.state
		FROM (SELECT host, MAX(seq) AS seq FROM boots GROUP BY host) m
		JOIN boots b ON b.host = m.host AND b.seq = m.seq`)
	if err != nil {
		return nil, err
	}
	out := make(map[string]store.Boot, len(boots))
	for _, b := range boots {
		out[b.Host] = b
	}
	return out, nil
}

// OpenBoots implements store.Boots.
func (s *DB) OpenBoots(ctx context.Context) ([]store.Boot, error) {
	return s.queryBoots(ctx, `SELECT `+bootColumns+` FROM boots WHERE outcome = ? ORDER BY id`, store.OutcomeInProgress)
}

func (s *DB) queryBoots(ctx context.Context, q string, args ...any) ([]store.Boot, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list boots: %w", err)
	}
	defer rows.Close()
	var out []store.Boot
	for rows.Next() {
		b, err := scanBoot(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list boots: %w", err)
	}
	return out, nil
}

type scanner interface{ Scan(...any) error }

func scanBoot(r scanner) (store.Boot, error) {
	var (
		b                       store.Boot
		started, updated, ended int64
		stage                   string
	)
	if err := r.Scan(&b.ID, &b.Host, &b.Seq, &started, &updated, &ended, &stage, &b.Outcome, &b.Reason, &b.State); err != nil {
		return b, err
	}
	b.Started, b.Updated, b.Ended = fromMilli(started), fromMilli(updated), fromMilli(ended)
	if err := b.Stage.UnmarshalText([]byte(stage)); err != nil {
		return b, fmt.Errorf("scan boot %d: %w", b.ID, err)
	}
	return b, nil
}

// AddEvent implements store.Events.
func (s *DB) AddEvent(ctx context.Context, e *event.Event) error {
	attrs, err := json.Marshal(e.Attrs)
	if err != nil {
		return fmt.Errorf("add event: %w", err)
	}
	res, err := s.db.ExecContext(ctx,
		`INSERT INTO events (boot_id, host, time, kind, stage, failed, message, attrs) VALUES (?,?,?,?,?,?,?,?)`,
		e.BootID, e.Host, unixMilli(e.Time), string(e.Kind), e.Stage.String(), e.Failed, e.Message, string(attrs))
	if err != nil {
		return fmt.Errorf("add event: %w", err)
	}
	e.ID, err = res.LastInsertId()
	if err != nil {
		return fmt.Errorf("add event: %w", err)
	}
	return nil
}

const eventColumns = `id, boot_id, host, time, kind, stage, failed, message, attrs`

// BootEvents implements store.Events.
func (s *DB) BootEvents(ctx context.Context, bootID int64) ([]event.Event, error) {
	return s.queryEvents(ctx, `SELECT `+eventColumns+` FROM events WHERE boot_id = ? ORDER BY id`, bootID)
}

// HostEvents implements store.Events.
func (s *DB) HostEvents(ctx context.Context, host string, since time.Time, limit int) ([]event.Event, error) {
	if limit <= 0 {
		limit = -1
	}
	return s.queryEvents(ctx, `SELECT `+eventColumns+` FROM events WHERE host = ? AND time >= ? ORDER BY id LIMIT ?`,
		host, unixMilli(since), limit)
}

func (s *DB) queryEvents(ctx context.Context, q string, args ...any) ([]event.Event, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	var out []event.Event
	for rows.Next() {
		var (
			e           event.Event
			t           int64
			kind, stage string
			attrs       string
		)
		if err := rows.Scan(&e.ID, &e.BootID, &e.Host, &t, &kind, &stage, &e.Failed, &e.Message, &attrs); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		e.Time, e.Kind = fromMilli(t), event.Kind(kind)
		if err := e.Stage.UnmarshalText([]byte(stage)); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		if err := json.Unmarshal([]byte(attrs), &e.Attrs); err != nil {
			return nil, fmt.Errorf("list events: event %d attrs: %w", e.ID, err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
