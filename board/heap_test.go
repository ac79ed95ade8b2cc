package board

import (
	"fmt"
	"reflect"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/pua"
)

// TestAoRStateSize: an AoR's state stays within its bound; a large site
// holds 100,000 of them, so every word counts 800 kB.
func TestAoRStateSize(t *testing.T) {
	const bound = 120 // bytes on a 64-bit platform (size class 128)
	if n := unsafe.Sizeof(aorState{}); n > bound {
		t.Fatalf("aorState is %d bytes, more than %d", n, bound)
	}
}

// TestIdleAoRHoldsNothingMore: an AoR back to one binding, idle, with no
// refusal and no watcher after a call, a refusal, watchers and a second
// binding holds nothing beyond its state, and shows as it did.
func TestIdleAoRHoldsNothingMore(t *testing.T) {
	b := New(Options{})
	a := "sip:alice@example.com"
	one := []Contact{{URI: "sip:alice@10.0.0.1", UserAgent: "Yealink", Expires: t0}}
	b.Contacts(a, one)
	want := aorOf(t, b, a)
	key := pua.Key{PresURI: a, Event: "dialog", ID: "x"}
	b.Contacts(a, []Contact{one[0], {URI: "sip:alice@10.0.0.2"}})
	b.DialogPublished(key, dialogOf("confirmed", "recipient", false, "sip:bob@example.com"))
	b.PublishResult(pua.Key{PresURI: a, Event: "presence"}, "modify", pua.Result{Status: 403, Reason: "Forbidden"})
	b.Watchers(a, []Watcher{{URI: "sip:w@example.com", Event: "presence", Status: "active"}})
	if d := aorOf(t, b, a); len(d.Contacts) != 2 || d.Lamp != LampTalking || len(d.Pubs) != 1 || d.Watchers != 1 {
		t.Fatalf("busy: %+v", d)
	}
	b.Contacts(a, one)
	b.DialogPublished(key, dialogdoc.Dialog{ID: "d1", State: "terminated"})
	b.PublishResult(pua.Key{PresURI: a, Event: "presence"}, "modify", pua.Result{Status: 200, Reason: "OK"})
	b.Watchers(a, nil)
	if d := aorOf(t, b, a); !reflect.DeepEqual(d, want) {
		t.Fatalf("idle again: %+v, want %+v", d, want)
	}
	b.mu.Lock()
	more := b.aors[a].more
	b.mu.Unlock()
	if more != nil {
		t.Fatalf("idle AoR still holds %+v", *more)
	}
}

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
