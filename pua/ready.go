package pua

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/puaside/puaside/clock"
)

// Store writes count as failing for /readyz once at least
// storeFailWrites of them in a row failed over at least storeFailFor: one
// lost write (a lock timeout, a failover) is retried by the next one and
// does not make the daemon unready.
const (
	storeFailWrites = 3
	storeFailFor    = 5 * time.Second
)

// WriteHealth follows the outcome of one component's store writes for
// /readyz: the engine's own, and those of the trackers (usrloc contacts,
// dialoginfo calls), which the daemon notes through it. Safe for
// concurrent use; the zero value is not usable, use NewWriteHealth.
type WriteHealth struct {
	clock   Clock
	mu      sync.Mutex
	failing int       // writes failed in a row
	since   time.Time // first failure of the row
	lastErr error
}

// NewWriteHealth returns a WriteHealth reading the time from clk (nil: the
// real clock).
func NewWriteHealth(clk Clock) *WriteHealth {
	return &WriteHealth{clock: clock.OrReal(clk)}
}

// Note records the outcome of one store write: a success clears the row of
// failures.
func (w *WriteHealth) Note(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		w.failing, w.lastErr = 0, nil
		return
	}
	if w.failing == 0 {
		w.since = w.clock.Now()
	}
	w.failing++
	w.lastErr = err
}

// Err is nil unless the writes keep failing (storeFailWrites in a row over
// storeFailFor or more); then it says for how long, and the last error.
func (w *WriteHealth) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failing < storeFailWrites {
		return nil
	}
	dur := w.clock.Now().Sub(w.since)
	if dur < storeFailFor {
		return nil
	}
	return fmt.Errorf("store writes failing for %s (%d in a row): %w", dur.Truncate(time.Second), w.failing, w.lastErr)
}

// noteStoreWrite records the outcome of one store write of the engine
// (write-behind, prompt write or the final flush).
func (e *Engine) noteStoreWrite(err error) { e.writes.Note(err) }

// StoreReady reports, for /readyz, whether the engine's store writes
// succeed: an error once they keep failing (3 in a row over 5 s or more).
func (e *Engine) StoreReady(context.Context) error { return e.writes.Err() }

// Ready reports whether the engine can do its job: the presence server
// answers (ServerReady) and store writes succeed (StoreReady). The error
// gives the reasons.
func (e *Engine) Ready(ctx context.Context) error {
	return errors.Join(e.ServerReady(ctx), e.StoreReady(ctx))
}
