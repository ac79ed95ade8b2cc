package mgmt

import (
	"sync"
	"time"
)

// limiterMaxKeys bounds the log limiter's memory.
const limiterMaxKeys = 4096

// limiter lets one event per key through per interval, so that a flood of
// refused requests is counted in full but logged once a minute per source
// and reason. Its map is bounded: stale keys are pruned when it fills, and
// while every key is fresh a new key is not logged.
type limiter struct {
	mu       sync.Mutex
	interval time.Duration
	last     map[string]time.Time
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
