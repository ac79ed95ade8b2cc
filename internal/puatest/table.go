package puatest

import (
	"maps"
	"sync"
)

// Table is one table of an in-memory store for tests: rows by key behind a
// mutex, the number of writes, and a write failure a test can switch on.
// The packages' fake stores (usrloc contacts and flags, dialoginfo calls,
// pua records, bla shared lines) are Tables behind their own interfaces.
type Table[K comparable, V any] struct {
	mu     sync.Mutex
	rows   map[K]V
	writes int
	fail   error
}

// NewTable returns an empty table.
func NewTable[K comparable, V any]() *Table[K, V] { return &Table[K, V]{rows: map[K]V{}} }

// Rows returns a copy of the rows (the values are not copied deeply).
func (t *Table[K, V]) Rows() map[K]V {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.rows)
}

// Get returns the row of k.
func (t *Table[K, V]) Get(k K) (V, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.rows[k]
	return v, ok
}

// Put sets the row of k (a test's own setup: not a counted write).
func (t *Table[K, V]) Put(k K, v V) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rows[k] = v
}

// Delete removes the row of k and reports whether there was one (not a
// counted write).
func (t *Table[K, V]) Delete(k K) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.rows[k]
	delete(t.rows, k)
	return ok
}

// Len is the number of rows.
func (t *Table[K, V]) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.rows)
}

// Write runs fn on the rows under the lock and counts a write; while a
// failure is set it returns that instead and changes nothing.
func (t *Table[K, V]) Write(fn func(rows map[K]V)) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fail != nil {
		return t.fail
	}
	t.writes++
	fn(t.rows)
	return nil
}

// Writes is the number of writes done.
func (t *Table[K, V]) Writes() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.writes
}

// FailWrites makes every later Write return err (nil: succeed again).
func (t *Table[K, V]) FailWrites(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.fail = err
}
