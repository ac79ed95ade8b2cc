package ingest

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// trust decides whether a source may feed an input. Its list is replaced
// whole on a configuration reload, without a lock on the read path.
type trust struct {
	prefixes atomic.Pointer[[]netip.Prefix]
}

func newTrust(prefixes []netip.Prefix) *trust {
	t := &trust{}
	t.prefixes.Store(&prefixes)
	return t
}

func (t *trust) allowed(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range *t.prefixes.Load() {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// limiterMaxKeys bounds the rate limiter's memory.
const limiterMaxKeys = 4096

// limiter lets one event per key through per interval (used to log an
// untrusted source or a bad-input reason at most once a minute). Its map is
// bounded: stale keys are pruned when it fills, and if every key is fresh
// the new key is simply not logged.
type limiter struct {
	mu       sync.Mutex
	interval time.Duration
	last     map[string]time.Time
	pruned   time.Time
}

func newLimiter(interval time.Duration) *limiter {
	return &limiter{interval: interval, last: make(map[string]time.Time)}
}

// allow reports whether an event for key may be logged now.
func (l *limiter) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.last[key]; ok && now.Sub(t) < l.interval {
		return false
	}
	if len(l.last) >= limiterMaxKeys {
		if now.Sub(l.pruned) < time.Second {
			return false // pruned a moment ago: do not rescan on every event of a flood
		}
		l.pruned = now
		for k, t := range l.last {
			if now.Sub(t) >= l.interval {
				delete(l.last, k)
			}
		}
		if len(l.last) >= limiterMaxKeys {
			return false
		}
	}
	l.last[key] = now
	return true
}
