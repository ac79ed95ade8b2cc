//go:build sqlite_cgo

package store

import (
	"database/sql"
	"errors"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// sqliteDriver is the database/sql driver behind sqlite:// URLs in a build
// with -tags sqlite_cgo: the C SQLite through github.com/mattn/go-sqlite3
// (needs cgo and a C compiler), registered under its own name so that the
// connection hook below sets what its DSN has no key for.
const sqliteDriver = "puaside_sqlite3"

func init() {
	sql.Register(sqliteDriver, &sqlite3.SQLiteDriver{
		ConnectHook: func(c *sqlite3.SQLiteConn) error {
			_, err := c.Exec("PRAGMA temp_store = MEMORY", nil)
			return err
		},
	})
}

// sqliteDSN is the DSN for the database file at path (or ":memory:"), with
// the same settings as the pure-Go build: WAL with synchronous=NORMAL, a
// 10 s busy timeout, foreign keys on, temporary tables in memory (the
// connection hook).
func sqliteDSN(path string) string {
	q := "_busy_timeout=10000&_journal_mode=WAL&_synchronous=NORMAL&_foreign_keys=1"
	if path == ":memory:" {
		return "file::memory:?" + q
	}
	return "file:" + path + "?" + q
}

// sqliteCode is the SQLite result code carried by err, if err is an error
// of the driver.
func sqliteCode(err error) (int, bool) {
	var e sqlite3.Error
	if errors.As(err, &e) {
		return int(e.ExtendedCode), true
	}
	return 0, false
}
