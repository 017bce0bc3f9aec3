package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"netboot/internal/store"
)

func init() {
	registerSchema("rbd", `
CREATE TABLE IF NOT EXISTS rbd_clients (
	id          INTEGER PRIMARY KEY,
	host        TEXT    NOT NULL,
	boot_id     INTEGER NOT NULL DEFAULT 0,
	time_ms     INTEGER NOT NULL,
	pool        TEXT    NOT NULL,
	image       TEXT    NOT NULL,
	client_addr TEXT    NOT NULL,
	client_id   TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS rbd_clients_host ON rbd_clients(host, pool, image, id);`)
}

var _ store.RBDClients = (*DB)(nil)

// RecordRBDClient implements store.RBDClients.
func (s *DB) RecordRBDClient(ctx context.Context, c store.RBDClient) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO rbd_clients(host, boot_id, time_ms, pool, image, client_addr, client_id)
		VALUES(?, ?, ?, ?, ?, ?, ?)`, c.Host, c.BootID, unixMilli(c.Time), c.Pool, c.Image, c.ClientAddr, c.ClientID)
	if err != nil {
		return fmt.Errorf("record rbd client of %s: %w", c.Host, err)
	}
	return nil
}

const rbdClientCols = `host, boot_id, time_ms, pool, image, client_addr, client_id`

func scanRBDClient(sc interface{ Scan(...any) error }) (store.RBDClient, error) {
	var c store.RBDClient
	var ms int64
	err := sc.Scan(&c.Host, &c.BootID, &ms, &c.Pool, &c.Image, &c.ClientAddr, &c.ClientID)
	c.Time = fromMilli(ms)
	return c, err
}

// LastRBDClient implements store.RBDClients.
func (s *DB) LastRBDClient(ctx context.Context, host, pool, image string) (store.RBDClient, error) {
	row := s.db.QueryRowContext(ctx, `SELECT `+rbdClientCols+` FROM rbd_clients
		WHERE host = ? AND pool = ? AND image = ? ORDER BY id DESC LIMIT 1`, host, pool, image)
	c, err := scanRBDClient(row)
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("last rbd client of %s: %w", host, store.ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("last rbd client of %s: %w", host, err)
	}
	return c, nil
}

// RBDClientHistory implements store.RBDClients.
func (s *DB) RBDClientHistory(ctx context.Context, host string, limit int) ([]store.RBDClient, error) {
	if limit <= 0 {
		limit = -1
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+rbdClientCols+` FROM rbd_clients WHERE host = ? ORDER BY id DESC LIMIT ?`, host, limit)
	if err != nil {
		return nil, fmt.Errorf("rbd client history of %s: %w", host, err)
	}
	defer rows.Close()
	var out []store.RBDClient
	for rows.Next() {
		c, err := scanRBDClient(rows)
		if err != nil {
			return nil, fmt.Errorf("rbd client history of %s: %w", host, err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
