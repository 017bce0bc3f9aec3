// Package sqlite is the embedded, pure-Go (modernc.org/sqlite) implementation
// of the store interfaces.
//
// Each part registers its schema with registerSchema from an init function in
// its own file; Open applies every schema (idempotent CREATE ... IF NOT
// EXISTS statements), so one file holds one part's tables and queries.
package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// DB is the SQLite store. It is safe for concurrent use.
type DB struct {
	db *sql.DB
}

type schema struct {
	name string
	ddl  string
}

var schemas []schema

// registerSchema adds a part's DDL; call it from init.
func registerSchema(name, ddl string) { schemas = append(schemas, schema{name, ddl}) }

// Open opens (creating if needed) the database at path; ":memory:" gives a
// private in-memory database, for tests.
func Open(ctx context.Context, path string) (*DB, error) {
	dsn, maxConns := memoryDSN(), 1
	if path != ":memory:" {
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		q := url.Values{}
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "busy_timeout(10000)")
		q.Add("_pragma", "synchronous(NORMAL)")
		q.Add("_pragma", "foreign_keys(ON)")
		q.Set("_txlock", "immediate")
		dsn, maxConns = "file:"+path+"?"+q.Encode(), 4
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	db.SetMaxOpenConns(maxConns)
	db.SetConnMaxIdleTime(0)
	s := &DB{db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return s, nil
}

// memoryDSN names a shared-cache in-memory database unique to this Open, so
// that all pooled connections see the same data.
func memoryDSN() string {
	return fmt.Sprintf("file:mem%d?mode=memory&cache=shared&_pragma=foreign_keys(ON)&_pragma=busy_timeout(10000)", time.Now().UnixNano())
}

func (s *DB) migrate(ctx context.Context) error {
	for _, sc := range schemas {
		if _, err := s.db.ExecContext(ctx, sc.ddl); err != nil {
			return fmt.Errorf("apply schema %s: %w", sc.name, err)
		}
	}
	return nil
}

// Close closes the database.
func (s *DB) Close() error { return s.db.Close() }

// SQL exposes the handle to this package's tests and to parts that keep
// their queries in this package.
func (s *DB) SQL() *sql.DB { return s.db }

// unixMilli stores times as integer milliseconds (0 = zero time).
func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}
