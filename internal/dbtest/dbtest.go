// Package dbtest runs store tests on both backends: an SQLite file in a
// temporary directory and a fresh database on the MariaDB/MySQL server at
// PUASIDE_TEST_MYSQL (default root@127.0.0.1:3306), dropped afterwards.
package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/go-sql-driver/mysql" // mysql driver for the admin connection

	"github.com/puaside/puaside/store"
)

// MySQLServer returns the "user:pass@host:port" of the test MySQL server.
func MySQLServer() string {
	if s := os.Getenv("PUASIDE_TEST_MYSQL"); s != "" {
		return s
	}
	return "root@127.0.0.1:3306"
}

// Backends lists the backend names Each runs.
var backends = []string{store.SQLite, store.MySQL}

// Each runs fn once per backend as a subtest, with a migrated, empty database.
func Each(t *testing.T, fn func(t *testing.T, db *store.DB)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			db := Open(t, b)
			fn(t, db)
		})
	}
}

// URL returns a db_url for a new empty database of the backend, removed when
// the test ends.
func URL(t testing.TB, backend string) string {
	t.Helper()
	switch backend {
	case store.SQLite:
		return "sqlite://" + filepath.Join(t.TempDir(), "puaside.db")
	case store.MySQL:
		var b [6]byte
		_, _ = rand.Read(b[:])
		name := "puaside_test_" + hex.EncodeToString(b[:])
		server := MySQLServer()
		admin, err := sql.Open("mysql", fmt.Sprintf("%s/?timeout=5s", tcpDSN(server)))
		if err != nil {
			t.Fatalf("dbtest: open mysql admin: %v", err)
		}
		defer admin.Close()
		if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
			t.Fatalf("dbtest: create database on %s (MariaDB must run there): %v", server, err)
		}
		t.Cleanup(func() {
			a, err := sql.Open("mysql", fmt.Sprintf("%s/?timeout=5s", tcpDSN(server)))
			if err == nil {
				_, _ = a.Exec("DROP DATABASE IF EXISTS " + name)
				a.Close()
			}
		})
		return "mysql://" + server + "/" + name
	}
	t.Fatalf("dbtest: unknown backend %q", backend)
	return ""
}

// Open opens and migrates a new empty database of the backend.
func Open(t testing.TB, backend string) *store.DB {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, URL(t, backend), "pua")
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatalf("dbtest: migrate: %v", err)
	}
	if backend == store.MySQL {
		if err := CheckStrict(ctx, db.X); err != nil {
			t.Fatalf("dbtest: %v", err)
		}
	}
	return db
}

// querier is what CheckStrict reads the mode through: a *sql.DB, a
// *sqlx.DB or one *sql.Conn.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// CheckStrict fails unless the MySQL session runs in strict mode
// (sql_mode with STRICT_TRANS_TABLES or STRICT_ALL_TABLES). The store
// tests of overlong and invalid values prove the store clips them itself;
// on a lax server the database would truncate them silently and those
// tests would pass whatever the store does.
func CheckStrict(ctx context.Context, q querier) error {
	var mode string
	if err := q.QueryRowContext(ctx, "SELECT @@SESSION.sql_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read sql_mode: %w", err)
	}
	for _, m := range strings.Split(mode, ",") {
		if m == "STRICT_TRANS_TABLES" || m == "STRICT_ALL_TABLES" {
			return nil
		}
	}
	return fmt.Errorf("the MySQL server at %s runs with sql_mode %q: the store tests need STRICT_TRANS_TABLES (SET GLOBAL sql_mode = CONCAT(@@sql_mode, ',STRICT_TRANS_TABLES'))", MySQLServer(), mode)
}

// tcpDSN turns "user:pass@host:port" into the driver's "user:pass@tcp(host:port)".
func tcpDSN(server string) string {
	at := len(server)
	for i := len(server) - 1; i >= 0; i-- {
		if server[i] == '@' {
			at = i
			break
		}
	}
	if at == len(server) {
		return "tcp(" + server + ")"
	}
	return server[:at] + "@tcp(" + server[at+1:] + ")"
}
