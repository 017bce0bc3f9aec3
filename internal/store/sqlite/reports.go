package sqlite

import (
	"context"
	"fmt"

	"netboot/internal/store"
)

func init() {
	registerSchema("reports", `
CREATE TABLE IF NOT EXISTS reboot_expectations (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	host      TEXT    NOT NULL,
	announced INTEGER NOT NULL,
	deadline  INTEGER NOT NULL,
	baseline  BLOB
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	time     INTEGER NOT NULL,
	url      TEXT    NOT NULL,
	event    TEXT    NOT NULL,
	host     TEXT    NOT NULL,
	boot_id  INTEGER NOT NULL DEFAULT 0,
	attempts INTEGER NOT NULL,
	ok       INTEGER NOT NULL,
	error    TEXT    NOT NULL DEFAULT '',
	payload  BLOB
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_ok ON webhook_deliveries (ok, id);
`)
}

var _ store.Reports = (*DB)(nil)

// AddExpectation implements store.Reports.
func (s *DB) AddExpectation(ctx context.Context, x *store.Expectation) error {
	res, err := s.db.ExecContext(ctx, `INSERT INTO reboot_expectations (host, announced, deadline, baseline) VALUES (?,?,?,?)`,
		x.Host, unixMilli(x.Announced), unixMilli(x.Deadline), x.Baseline)
	if err != nil {
		return fmt.Errorf("add reboot expectation: %w", err)
	}
	if x.ID, err = res.LastInsertId(); err != nil {
		return fmt.Errorf("add reboot expectation: %w", err)
	}
	return nil
}

// DeleteExpectation implements store.Reports.
func (s *DB) DeleteExpectation(ctx context.Context, id int64) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM reboot_expectations WHERE id = ?`, id); err != nil {
		return fmt.Errorf("delete reboot expectation %d: %w", id, err)
	}
	return nil
}

// Expectations implements store.Reports.
func (s *DB) Expectations(ctx context.Context) ([]store.Expectation, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, host, announced, deadline, baseline FROM reboot_expectations ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list reboot expectations: %w", err)
	}
	defer rows.Close()
	var out []store.Expectation
	for rows.Next() {
		var x store.Expectation
		var announced, deadline int64
		if err := rows.Scan(&x.ID, &x.Host, &announced, &deadline, &x.Baseline); err != nil {
			return nil, fmt.Errorf("list reboot expectations: %w", err)
		}
		x.Announced, x.Deadline = fromMilli(announced), fromMilli(deadline)
		out = append(out, x)
	}
	return out, rows.Err()
}

// AddDelivery implements store.Reports.
func (s *DB) AddDelivery(ctx context.Context, d *store.Delivery) error {
	res, err := s.db.ExecContext(ctx,
		`INSERT INTO webhook_deliveries (time, url, event, host, boot_id, attempts, ok, error, payload) VALUES (?,?,?,?,?,?,?,?,?)`,
		unixMilli(d.Time), d.URL, d.Event, d.Host, d.BootID, d.Attempts, d.OK, d.Error, d.Payload)
	if err != nil {
		return fmt.Errorf("add webhook delivery: %w", err)
	}
	if d.ID, err = res.LastInsertId(); err != nil {
		return fmt.Errorf("add webhook delivery: %w", err)
	}
	return nil
}

// Deliveries implements store.Reports.
func (s *DB) Deliveries(ctx context.Context, failedOnly bool, limit int) ([]store.Delivery, error) {
	if limit <= 0 {
		limit = -1
	}
	q := `SELECT id, time, url, event, host, boot_id, attempts, ok, error, payload FROM webhook_deliveries`
	if failedOnly {
		q += ` WHERE ok = 0`
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("list webhook deliveries: %w", err)
	}
	defer rows.Close()
	var out []store.Delivery
	for rows.Next() {
		var d store.Delivery
		var t int64
		if err := rows.Scan(&d.ID, &t, &d.URL, &d.Event, &d.Host, &d.BootID, &d.Attempts, &d.OK, &d.Error, &d.Payload); err != nil {
			return nil, fmt.Errorf("list webhook deliveries: %w", err)
		}
		d.Time = fromMilli(t)
		out = append(out, d)
	}
	return out, rows.Err()
}
