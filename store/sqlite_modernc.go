//go:build !sqlite_cgo

package store

import (
	"errors"

	"modernc.org/sqlite" // registers the "sqlite" driver
)

// sqliteDriver is the database/sql driver behind sqlite:// URLs: the pure-Go
// modernc.org/sqlite, so that the default build needs no C compiler. Build
// with -tags sqlite_cgo for the cgo driver instead (sqlite_cgo.go).
const sqliteDriver = "sqlite"

// sqliteDSN is the DSN for the database file at path (or ":memory:"): WAL
// with synchronous=NORMAL, a 10 s busy timeout, foreign keys on, temporary
// tables in memory.
func sqliteDSN(path string) string {
	q := "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_pragma=temp_store(MEMORY)"
	if path == ":memory:" {
		return "file::memory:?" + q
	}
	return "file:" + path + "?" + q
}

// sqliteCode is the SQLite result code carried by err, if err is an error
// of the driver.
func sqliteCode(err error) (int, bool) {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code(), true
	}
	return 0, false
}
