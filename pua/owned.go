package pua

import (
	"sync"
	"time"
)

// ownerCounts counts the live publications of each owner flag, so that
// max_publications can refuse a flood from one source.
type ownerCounts struct {
	mu      sync.Mutex
	n       map[int]int
	lastLog time.Time
}

// take counts a new publication of flag; it reports false (counting
// nothing) when flag already holds max. force counts it regardless
// (records loaded from the store).
func (o *ownerCounts) take(flag, max int, force bool) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = make(map[int]int)
	}
	if !force && max > 0 && o.n[flag] >= max {
		return false
	}
	o.n[flag]++
	return true
}

// release uncounts a publication of flag.
func (o *ownerCounts) release(flag int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n[flag] > 0 {
		o.n[flag]--
	}
}

// count returns the live publications of flag.
func (o *ownerCounts) count(flag int) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[flag]
}

// logDue reports whether a refusal may be logged now (once a minute).
func (o *ownerCounts) logDue(now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if now.Sub(o.lastLog) < time.Minute {
		return false
	}
	o.lastLog = now
	return true
}
