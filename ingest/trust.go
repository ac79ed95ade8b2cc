package ingest

import (
	"net/netip"
	"sync/atomic"
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
