package pua

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Store writes count as failing for /readyz once at least
// storeFailWrites of them in a row failed over at least storeFailFor: one
// lost write (a lock timeout, a failover) is retried by the next one and
// does not make the daemon unready.
const (
	storeFailWrites = 3
	storeFailFor    = 5 * time.Second
)

// storeHealth follows the outcome of the engine's store writes.
type storeHealth struct {
	mu      sync.Mutex
	failing int       // writes failed in a row
	since   time.Time // first failure of the row
	lastErr error
}

// noteStoreWrite records the outcome of one store write (write-behind,
// prompt write or the final flush).
func (e *Engine) noteStoreWrite(err error) {
	w := &e.writes
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		w.failing, w.lastErr = 0, nil
		return
	}
	if w.failing == 0 {
		w.since = e.clock.Now()
	}
	w.failing++
	w.lastErr = err
}

// StoreReady reports, for /readyz, whether store writes succeed: an error
// once they keep failing (3 in a row over 5 s or more).
func (e *Engine) StoreReady(context.Context) error {
	w := &e.writes
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failing < storeFailWrites {
		return nil
	}
	dur := e.clock.Now().Sub(w.since)
	if dur < storeFailFor {
		return nil
	}
	return fmt.Errorf("store writes failing for %s (%d in a row): %w", dur.Truncate(time.Second), w.failing, w.lastErr)
}

// Ready reports whether the engine can do its job: the presence server
// answers (ServerReady) and store writes succeed (StoreReady). The error
// gives the reasons.
func (e *Engine) Ready(ctx context.Context) error {
	return errors.Join(e.ServerReady(ctx), e.StoreReady(ctx))
}
