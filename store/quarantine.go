package store

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/go-sql-driver/mysql"
)

// errUnstorable marks a value or row that can never be stored as it is
// (checked before writing, or refused by the database for its content).
var errUnstorable = errors.New("row cannot be stored")

// rowError reports whether err is about the content of the rows written (a
// value too long or badly encoded, out of range, a NULL, a unique key
// collision, ...) rather than about the database or the connection. Such a
// batch is split to find the rows at fault; any other error is returned to
// the caller, which retries the whole batch later.
func rowError(err error) bool {
	if errors.Is(err, errUnstorable) {
		return true
	}
	var my *mysql.MySQLError
	if errors.As(err, &my) {
		switch my.Number {
		case 1048, // column cannot be null
			1062,       // duplicate entry
			1264,       // out of range value
			1265,       // data truncated
			1292,       // incorrect value
			1300,       // invalid character string
			1364,       // field has no default value
			1366,       // incorrect string value (encoding)
			1406,       // data too long
			1451, 1452, // foreign key
			1690, // numeric value out of range
			3140, // invalid JSON
			4025: // CHECK constraint
			return true
		}
		return false
	}
	if code, ok := sqliteCode(err); ok {
		switch code & 0xff { // primary result code
		case 18, // SQLITE_TOOBIG
			19, // SQLITE_CONSTRAINT (NOT NULL, UNIQUE, CHECK, ...)
			20, // SQLITE_MISMATCH
			25: // SQLITE_RANGE
			return true
		}
	}
	return false
}

// isolate writes items with write, one transaction per call. When a write
// fails for the content of its rows (rowError), the items are split in
// halves and each half written on its own, down to single items; an item
// that still fails is passed to bad (set aside) and every other item is
// written. Any other error stops and is returned: nothing after it is
// written, and the caller retries.
func isolate[T any](ctx context.Context, items []T, write func([]T) error, bad func(T, error)) error {
	if len(items) == 0 {
		return nil
	}
	err := write(items)
	if err == nil {
		return nil
	}
	if !rowError(err) || ctx.Err() != nil {
		return err
	}
	if len(items) == 1 {
		bad(items[0], err)
		return nil
	}
	half := len(items) / 2
	if err := isolate(ctx, items[:half], write, bad); err != nil {
		return err
	}
	return isolate(ctx, items[half:], write, bad)
}

// quarantineMemory bounds the number of (table, key) pairs remembered to
// log a quarantined row once; past it the memory starts afresh.
const quarantineMemory = 4096

// quarantine remembers which rows were already logged as set aside.
type quarantine struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

// first reports whether the row (table, key) is set aside for the first
// time since the memory was last cleared.
func (q *quarantine) first(table, key string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := table + "\x00" + key
	if _, ok := q.seen[k]; ok {
		return false
	}
	if q.seen == nil || len(q.seen) >= quarantineMemory {
		q.seen = make(map[string]struct{})
	}
	q.seen[k] = struct{}{}
	return true
}

// setAside counts a row the database refused or that cannot fit its
// columns, and logs it (at warning level the first time, then at debug
// level) with the table, the row's key and the reason. The row is not
// written and the save it was part of succeeds for the other rows.
func (db *DB) setAside(table, key string, err error) {
	db.Metrics.StoreQuarantined(table)
	if db.quarantine.first(table, key) {
		db.logger().Warn("store: row set aside (not written)", "table", table, "key", logKey(key), "reason", err.Error())
		return
	}
	db.logger().Debug("store: row set aside again (not written)", "table", table, "key", logKey(key), "reason", err.Error())
}

// logKeyWidth bounds a key in a log line: hostile input can be long.
const logKeyWidth = 160

// logKey is key made valid UTF-8 and cut to logKeyWidth characters, with
// its full length noted when cut.
func logKey(key string) string {
	w := width{n: logKeyWidth}
	s := w.fit(key)
	if len(s) < len(key) {
		return fmt.Sprintf("%s… (%d bytes)", s, len(key))
	}
	return s
}
