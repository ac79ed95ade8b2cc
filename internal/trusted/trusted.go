// Package trusted is what the inputs that take requests from the network
// (ingest's listeners and the management plane) share about their sources:
// the parsing of a trusted_sources list, and a bounded limiter that logs a
// refused source or a bad request at most once per interval.
package trusted

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Parse parses a trusted_sources list: CIDRs, or single addresses taken as
// one host. IPv4-mapped IPv6 addresses are unmapped.
func Parse(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q: not a CIDR or address", s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// MaxKeys bounds a Limiter's memory.
const MaxKeys = 4096

// Limiter lets one event per key through per interval, so that a flood of
// refused requests is counted in full but logged once per interval per
// source and reason. Its map is bounded: stale keys are pruned when it
// fills, and while every key is fresh a new key is not logged.
type Limiter struct {
	mu       sync.Mutex
	interval time.Duration
	last     map[string]time.Time
	pruned   time.Time
}

// NewLimiter returns a Limiter letting one event per key through per
// interval.
func NewLimiter(interval time.Duration) *Limiter {
	return &Limiter{interval: interval, last: make(map[string]time.Time)}
}

// Allow reports whether an event for key may be logged now.
func (l *Limiter) Allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.last[key]; ok && now.Sub(t) < l.interval {
		return false
	}
	if len(l.last) >= MaxKeys {
		if now.Sub(l.pruned) < time.Second {
			return false // pruned a moment ago: do not rescan on every event of a flood
		}
		l.pruned = now
		for k, t := range l.last {
			if now.Sub(t) >= l.interval {
				delete(l.last, k)
			}
		}
		if len(l.last) >= MaxKeys {
			return false
		}
	}
	l.last[key] = now
	return true
}
