package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// inBatches calls fn with consecutive chunks of items, each at most size
// long, and stops at the first error. Between chunks it gives the
// processor away (pause): a large write, with SQLite running in the
// process, then holds it for one chunk at a time, so that with few
// processors (GOMAXPROCS=1) the SIP path is not held up by the whole
// write.
func inBatches[T any](items []T, size int, fn func(chunk []T) error) error {
	for start := 0; start < len(items); start += size {
		if start > 0 {
			pause()
		}
		if err := fn(items[start:min(start+size, len(items))]); err != nil {
			return err
		}
	}
	return nil
}

// pause parks the calling goroutine for pauseFor. runtime.Gosched is not
// enough: a goroutine that yields stays runnable, and while one is the
// scheduler does not poll the network, so the goroutines waiting for
// datagrams would still wait for the whole write; pauseFor gives them
// time to carry a datagram through before the next chunk.
func pause() { time.Sleep(pauseFor) }

// pauseFor is how long pause parks.
const pauseFor = 200 * time.Microsecond

// stmtCtx is the context for the statements of a transaction begun with
// ctx. With SQLite it is ctx without its end: the driver (modernc) starts
// a goroutine per statement to watch a context that can end, and sets a
// progress handler to interrupt it: a goroutine started and woken per
// statement, one per UPDATE of a changed publication (BENCHMARKS.md, the
// heap-floor round: 7 – 9 % of the call path's CPU). The transaction keeps ctx: when it ends, database/sql rolls the
// transaction back, so the next statement fails and the write stops
// between statements instead of inside one: a statement already running
// (one waiting out busy_timeout for another process's lock included)
// finishes first, so a caller's deadline can be passed by that much.
// MySQL's driver watches the context once per connection: ctx as it is.
func (db *DB) stmtCtx(ctx context.Context) context.Context {
	if db.Dialect == SQLite {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

// batcher runs the multi-row statements of one transaction. The statement
// of a full-size batch is prepared once and reused (parsed once per
// transaction); a shorter batch, the last one, runs as a plain statement.
type batcher struct {
	ctx  context.Context
	tx   *sql.Tx
	full map[string]*sql.Stmt
}

func newBatcher(ctx context.Context, tx *sql.Tx) *batcher {
	return &batcher{ctx: ctx, tx: tx}
}

// exec runs q with args; full says the batch has the full size.
func (b *batcher) exec(q string, full bool, args []any) error {
	if !full {
		_, err := b.tx.ExecContext(b.ctx, q, args...)
		return err
	}
	st := b.full[q]
	if st == nil {
		var err error
		if st, err = b.tx.PrepareContext(b.ctx, q); err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
		if b.full == nil {
			b.full = make(map[string]*sql.Stmt)
		}
		b.full[q] = st
	}
	_, err := st.ExecContext(b.ctx, args...)
	return err
}

// close releases the prepared statements.
func (b *batcher) close() {
	for _, st := range b.full {
		st.Close()
	}
}

// valuesList is the VALUES list of a multi-row INSERT: n rows of cols
// placeholders each.
func valuesList(n, cols int) string {
	row := "(" + placeholders(cols) + ")"
	return strings.Repeat(row+", ", n-1) + row
}

// anys is keys as statement arguments.
func anys[T any](keys []T) []any {
	out := make([]any, len(keys))
	for i, k := range keys {
		out[i] = k
	}
	return out
}
