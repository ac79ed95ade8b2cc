// Package store is the only package that touches SQL. It opens the database
// named by db_url (sqlite://PATH, the default, through the pure-Go
// modernc.org/sqlite driver, or the C SQLite in a build with -tags
// sqlite_cgo; or mysql://user:pass@host:port/db through
// go-sql-driver/mysql), applies the embedded schema, and implements the
// persistence interfaces of the pua engine and the trackers.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"

	"github.com/puaside/puaside/metrics"
	"github.com/puaside/puaside/schema"
)

// Dialects.
const (
	SQLite = "sqlite"
	MySQL  = "mysql"
)

// ErrUnknownScheme is returned for a db_url whose scheme is neither sqlite nor mysql.
var ErrUnknownScheme = errors.New("unknown db_url scheme")

// ErrBadTable is returned by Open for a pua table name that is not a plain
// SQL identifier of at most 32 characters (the size of version.table_name).
var ErrBadTable = errors.New("bad pua table name")

// DB is an open puaside database.
type DB struct {
	// X is the sqlx handle. Queries must be written with ? placeholders
	// (both dialects accept them).
	X *sqlx.DB
	// Dialect is SQLite or MySQL.
	Dialect string
	// Table is the name of the pua table (config db_table, default "pua").
	Table string
	// Log receives warnings about stored rows that cannot be loaded; nil
	// means slog.Default().
	Log *slog.Logger
	// Metrics counts such rows (input "store", reason "bad_row") and the
	// rows set aside when saving (puaside_store_rows_quarantined_total);
	// may be nil.
	Metrics *metrics.Metrics

	colsOnce   sync.Once
	cols       columns // text column widths of the schema
	quarantine quarantine
	stmts      stmtCache // the pua table's statements, prepared once
	updates    sync.Map  // skipped-column mask → the pua table's UPDATE
	writer     string    // FenceTrackerWrites's instance id; "" unfenced
}

// columns returns the text column widths of the dialect's schema, read once.
func (db *DB) columns() columns {
	db.colsOnce.Do(func() {
		c, err := schemaColumns(db.Dialect)
		if err != nil {
			db.logger().Error("store: column widths unknown, values are written unclipped", "err", err)
			c = columns{}
		}
		db.cols = c
	})
	return db.cols
}

// row returns a fitter for one row of table (puaTemplate for the pua table).
func (db *DB) row(table string) *row {
	return &row{cols: db.columns(), table: table}
}

// logger returns db.Log or the default logger.
func (db *DB) logger() *slog.Logger {
	if db.Log != nil {
		return db.Log
	}
	return slog.Default()
}

// validTable reports whether name is a plain SQL identifier that fits
// version.table_name.
func validTable(name string) bool {
	if name == "" || len(name) > 32 {
		return false
	}
	for i, c := range name {
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// redact returns db_url with any password hidden, for error messages.
func redact(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil || u.User == nil {
		if at := strings.LastIndex(dbURL, "@"); at >= 0 {
			if scheme, _, ok := strings.Cut(dbURL, "://"); ok {
				return scheme + "://xxxxx" + dbURL[at:]
			}
			return "xxxxx" + dbURL[at:]
		}
		return dbURL
	}
	return u.Redacted()
}

// ParseURL turns a db_url into a dialect (SQLite or MySQL) and DSN.
func ParseURL(dbURL string) (dialect, dsn string, err error) {
	scheme, rest, ok := strings.Cut(dbURL, "://")
	if !ok {
		return "", "", fmt.Errorf("store: db_url %q: missing scheme (want sqlite://PATH or mysql://user:pass@host:port/db): %w", redact(dbURL), ErrUnknownScheme)
	}
	switch scheme {
	case "sqlite":
		if rest == "" {
			return "", "", fmt.Errorf("store: db_url %q: empty sqlite path", dbURL)
		}
		return SQLite, sqliteDSN(rest), nil
	case "mysql":
		u, err := url.Parse(dbURL)
		if err != nil {
			return "", "", fmt.Errorf("store: db_url %q: %w", redact(dbURL), err)
		}
		cfg := mysql.NewConfig()
		cfg.User = u.User.Username()
		cfg.Passwd, _ = u.User.Password()
		cfg.Net = "tcp"
		cfg.Addr = u.Host
		if u.Port() == "" {
			cfg.Addr = u.Hostname() + ":3306"
		}
		cfg.DBName = strings.TrimPrefix(u.Path, "/")
		if cfg.DBName == "" {
			return "", "", fmt.Errorf("store: db_url %q: missing database name", redact(dbURL))
		}
		cfg.ParseTime = true
		cfg.Timeout = 5 * time.Second
		return MySQL, cfg.FormatDSN(), nil
	}
	return "", "", fmt.Errorf("store: db_url %q: scheme %q (want sqlite or mysql): %w", redact(dbURL), scheme, ErrUnknownScheme)
}

// Open connects to db_url and checks that the database answers. table is the
// pua table name ("" means "pua"). An unknown scheme gives ErrUnknownScheme,
// a bad table name ErrBadTable, and a database that does not answer within
// 10 s an error naming the URL (password hidden).
func Open(ctx context.Context, dbURL, table string) (*DB, error) {
	if table == "" {
		table = "pua"
	}
	if !validTable(table) {
		return nil, fmt.Errorf("store: db_table %q: want letters, digits and _, at most 32: %w", table, ErrBadTable)
	}
	driver, dsn, err := ParseURL(dbURL)
	if err != nil {
		return nil, err
	}
	name := driver
	if driver == SQLite {
		name = sqliteDriver
	}
	sdb, err := sql.Open(name, dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", driver, err)
	}
	x := sqlx.NewDb(sdb, driver) // placeholders: the dialect's, "?" for both
	if driver == SQLite {
		// One writer at a time; the busy timeout covers the rest.
		x.SetMaxOpenConns(1)
	} else {
		x.SetMaxOpenConns(16)
		x.SetConnMaxLifetime(5 * time.Minute)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := x.PingContext(pctx); err != nil {
		x.Close()
		return nil, fmt.Errorf("store: connect to %s database %s: %w", driver, redact(dbURL), err)
	}
	return &DB{X: x, Dialect: driver, Table: table}, nil
}

// Close closes the database.
func (db *DB) Close() error {
	db.stmts.close()
	return db.X.Close()
}

// Ping checks the database answers (for /readyz).
func (db *DB) Ping(ctx context.Context) error {
	if err := db.X.PingContext(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Migrate applies every embedded migration not yet applied, in order, and
// returns the names it applied.
func (db *DB) Migrate(ctx context.Context) ([]string, error) {
	migs, err := schema.Migrations(db.Dialect)
	if err != nil {
		return nil, err
	}
	if _, err := db.X.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS puaside_migrations (
		name VARCHAR(255) NOT NULL PRIMARY KEY,
		applied_at BIGINT NOT NULL)`); err != nil {
		return nil, fmt.Errorf("store: create puaside_migrations: %w", err)
	}
	var done []string
	if err := db.X.SelectContext(ctx, &done, `SELECT name FROM puaside_migrations`); err != nil {
		return nil, fmt.Errorf("store: read puaside_migrations: %w", err)
	}
	have := make(map[string]bool, len(done))
	for _, n := range done {
		have[n] = true
	}
	var applied []string
	for _, m := range migs {
		if have[m.Name] {
			continue
		}
		if err := db.apply(ctx, m); err != nil {
			return applied, err
		}
		applied = append(applied, m.Name)
	}
	return applied, nil
}

// apply runs one migration and records it: in one transaction on SQLite,
// step by idempotent step on MySQL (which commits each DDL statement), so
// that a run cut short is finished by the next one.
func (db *DB) apply(ctx context.Context, m schema.Migration) (err error) {
	var q execQuerier = db.X
	var tx *sql.Tx
	if db.Dialect == SQLite {
		if tx, err = db.X.BeginTx(ctx, nil); err != nil {
			return fmt.Errorf("store: migration %s: begin: %w", m.Name, err)
		}
		defer func() {
			if err != nil {
				_ = tx.Rollback()
			}
		}()
		q = tx
	}
	for _, st := range m.Statements {
		st = strings.ReplaceAll(st, "{{pua}}", db.Table)
		if err := db.step(ctx, q, st); err != nil {
			return fmt.Errorf("store: migration %s: %w", m.Name, err)
		}
	}
	if _, err := q.ExecContext(ctx, `INSERT INTO puaside_migrations (name, applied_at) VALUES (?, ?)`,
		m.Name, time.Now().Unix()); err != nil {
		return fmt.Errorf("store: record migration %s: %w", m.Name, err)
	}
	if tx != nil {
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("store: migration %s: commit: %w", m.Name, err)
		}
	}
	return nil
}
