package board

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// BenchmarkRegisteredAoRHeap reports the heap the board holds per
// registered AoR at 100,000 AoRs, each with one binding and its lamp idle,
// as a registration run leaves them. The AoR names and the bindings'
// strings are built before the first reading: in the daemon they are
// usrloc's, which the board shares; each contact set is a new slice, as
// the daemon converts usrloc's for every change.
func BenchmarkRegisteredAoRHeap(b *testing.B) {
	const n = 100_000
	aors := make([]string, n)
	uris := make([]string, n)
	for i := range n {
		aors[i] = fmt.Sprintf("sip:user%06d@example.com", i)
		uris[i] = fmt.Sprintf("sip:user%06d@192.0.2.%d:5060", i, i%250)
	}
	const ua = "Yealink SIP-T46S 66.86.0.15"
	expires := time.Now().Add(time.Hour)
	for range b.N {
		bd := New(Options{})
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range n {
			cs := make([]Contact, 0, 1)
			cs = append(cs, Contact{URI: uris[i], UserAgent: ua, Expires: expires})
			bd.Contacts(aors[i], cs)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		bd.mu.Lock()
		got := len(bd.aors)
		bd.mu.Unlock()
		if got != n {
			b.Fatalf("%d AoRs on the board", got)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/AoR")
		runtime.KeepAlive(bd)
	}
}
