package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
)

// stmtCacheMax bounds the statements kept prepared across transactions
// (per database connection on the server side).
const stmtCacheMax = 256

// stmtCache keeps the statements of the prompt writes prepared on the
// database, so that SQLite parses each query once per connection instead
// of once per transaction (a multi-row INSERT of the pua table is a few
// hundred placeholders long: its parse cost about as much as running it).
//
// A statement cannot be prepared on the database while a transaction holds
// the connection (SQLite has one), so a query first seen inside a
// transaction is prepared on the transaction and noted; ready prepares the
// noted queries on the database before the next transaction begins.
type stmtCache struct {
	mu     sync.Mutex
	m      map[string]*sql.Stmt
	wanted map[string]bool
}

// ready prepares, on db, the queries noted since the last call, while no
// transaction of the caller is open. A query that fails to prepare is not
// cached (the transaction prepares it again and reports its error).
func (c *stmtCache) ready(ctx context.Context, db *sql.DB) {
	c.mu.Lock()
	wanted := c.wanted
	c.wanted = nil
	c.mu.Unlock()
	for q := range wanted {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			continue
		}
		c.mu.Lock()
		if c.m == nil {
			c.m = make(map[string]*sql.Stmt)
		}
		if old := c.m[q]; old != nil || len(c.m) >= stmtCacheMax {
			c.mu.Unlock()
			st.Close()
			continue
		}
		c.m[q] = st
		c.mu.Unlock()
	}
}

// txStmts are the statements of one transaction: each query bound to the
// transaction once, whatever the number of rows it runs for.
type txStmts struct {
	c  *stmtCache
	tx *sql.Tx
	m  map[string]*sql.Stmt
}

// begin returns the statements of tx.
func (c *stmtCache) begin(tx *sql.Tx) *txStmts { return &txStmts{c: c, tx: tx} }

// stmt returns q prepared for the transaction.
func (t *txStmts) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st := t.m[q]; st != nil {
		return st, nil
	}
	st, err := t.c.stmt(ctx, t.tx, q)
	if err != nil {
		return nil, err
	}
	if t.m == nil {
		t.m = make(map[string]*sql.Stmt)
	}
	t.m[q] = st
	return st, nil
}

// exec runs q with args in the transaction.
func (t *txStmts) exec(ctx context.Context, q string, args []any) error {
	st, err := t.stmt(ctx, q)
	if err != nil {
		return err
	}
	_, err = st.ExecContext(ctx, args...)
	return err
}

// stmt returns q prepared for tx: the cached statement bound to tx, or a
// statement prepared on tx (closed with it), noting q for ready.
func (c *stmtCache) stmt(ctx context.Context, tx *sql.Tx, q string) (*sql.Stmt, error) {
	c.mu.Lock()
	st := c.m[q]
	if st == nil && len(c.m) < stmtCacheMax {
		if c.wanted == nil {
			c.wanted = make(map[string]bool)
		}
		c.wanted[q] = true
	}
	c.mu.Unlock()
	if st != nil {
		return tx.StmtContext(ctx, st), nil
	}
	st, err := tx.PrepareContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	return st, nil
}

// close releases the cached statements.
func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.m {
		st.Close()
	}
	c.m, c.wanted = nil, nil
}

// paddedLen is the number of placeholders an IN list of n keys is given,
// n rounded up to a power of two but at most max, so that the lists of
// every size share a few prepared statements. The list is padded by
// repeating its last key (IN ignores repeats).
func paddedLen(n, max int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return min(p, max)
}

// padKeys returns keys as statement arguments, padded to paddedLen.
func padKeys[T any](keys []T, max int) []any {
	out := make([]any, paddedLen(len(keys), max))
	for i := range out {
		out[i] = keys[min(i, len(keys)-1)]
	}
	return out
}
