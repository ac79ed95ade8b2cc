package pua

import (
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/emiago/sipgo/sip"
)

// BenchmarkPublish measures PUBLISH transactions per second against an
// in-process presence server on loopback, many records in parallel (each
// goroutine modifies its own record and waits for the reply).
func BenchmarkPublish(b *testing.B) {
	fs := newFakeServer(b)
	fs.SetQuiet(true)
	e := newTestEngine(b, fs, nil, nil, func(c *Config) {
		c.MaxOutstanding = 256
		c.RequestTimeout = 10 * time.Second
	})
	benchPublish(b, e)
}

// BenchmarkIdlePublicationHeap reports the heap held per idle, accepted
// publication at 100,000 records (body: a ~300-byte PIDF). Replies are
// applied through the state machine without a network.
func BenchmarkIdlePublicationHeap(b *testing.B) {
	const n = 100_000
	for range b.N {
		e := newHeapEngine(b)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range n {
			key := Key{PresURI: fmt.Sprintf("sip:user%06d@example.com", i), Event: "presence", ID: "usrloc"}
			body := []byte(fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:user%06d@example.com">
  <tuple id="a1b2c3d4"><status><basic>open</basic></status><contact priority="1.0">sip:user%06d@192.0.2.10:5060</contact></tuple>
</presence>`, i, i))
			if err := e.Publish(PublishRequest{Key: key, Body: body, Flag: FlagUsrloc}); err != nil {
				b.Fatal(err)
			}
		}
		for i := range n {
			t, _ := e.queue.pop()
			r := t.(*pubRec)
			r.shard.mu.Lock()
			op := e.nextPubOp(r, e.clock.Now())
			e.applyPublishResult(r, op, Result{Status: 200, Reason: "OK", ETag: fmt.Sprintf("a.%d.%d", i, time.Now().UnixNano()), Expires: time.Hour})
			r.shard.mu.Unlock()
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got := len(e.Publications()); got != n {
			b.Fatalf("%d publications", got)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/publication")
		runtime.KeepAlive(e)
	}
}

// TestPubRecSize holds the publication record to its size class: a
// process holds one per publication, 100,000 and more, so each size class
// more costs megabytes of heap (and twice that of RSS). Rare fields go to
// pubRare, small ones pack at the end of pubRec.
func TestPubRecSize(t *testing.T) {
	const limit = 320
	if n := unsafe.Sizeof(pubRec{}); n > limit {
		t.Fatalf("pubRec takes %d bytes, more than %d", n, limit)
	}
}

// TestPlainPublicationHasNoRarePart: a publication without extra headers,
// outbound proxy, waiter or refusal takes no pubRare (see TestPubRecSize).
func TestPlainPublicationHasNoRarePart(t *testing.T) {
	fs := newFakeServer(t)
	e := newTestEngine(t, fs, newFakeClock(), nil, nil)
	if err := e.Publish(pubReq("a")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "publication accepted", func() bool {
		pi, _ := e.Publication(presKey)
		return pi.State == StateActive
	})
	s := e.pubShard(presKey)
	s.mu.Lock()
	rare := s.pubs[presKey].rare
	s.mu.Unlock()
	if rare != nil {
		t.Fatalf("rare part %+v", *rare)
	}
}

// BenchmarkIdleSubscriptionHeap reports the heap held per idle, active
// subscription at 100,000 records (a presence subscription on behalf of a
// watcher, its 200 with a To tag, a Contact and one Record-Route applied
// through the state machine without a network).
func BenchmarkIdleSubscriptionHeap(b *testing.B) {
	const n = 100_000
	for range b.N {
		e := newHeapEngine(b)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range n {
			key := SubKey{PresURI: fmt.Sprintf("sip:user%06d@example.com", i), WatcherURI: fmt.Sprintf("sip:jabber%06d@xmpp.example.com", i),
				Event: "presence", ID: "xmpp"}
			if err := e.Subscribe(SubscribeRequest{SubKey: key, Expires: time.Hour, Flag: FlagXMPPSubscribe}); err != nil {
				b.Fatal(err)
			}
		}
		for i := range n {
			t, _ := e.queue.pop()
			r := t.(*subRec)
			r.shard.mu.Lock()
			op := e.nextSubOp(r, e.clock.Now())
			res := sip.NewResponse(200, "OK")
			to := &sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: fmt.Sprintf("user%06d", i), Host: "example.com"}, Params: sip.NewParams()}
			to.Params.Add("tag", fmt.Sprintf("srv%08d", i))
			res.AppendHeader(to)
			res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: "192.0.2.1", Port: 5060}})
			res.AppendHeader(sip.NewHeader("Record-Route", "<sip:192.0.2.2;lr>"))
			res.AppendHeader(sip.NewHeader("Expires", "3600"))
			e.applySubscribeResult(r, op, txOutcome{res: res}, Result{Status: 200, Reason: "OK", Expires: time.Hour})
			r.shard.mu.Unlock()
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got := len(e.Subscriptions()); got != n {
			b.Fatalf("%d subscriptions", got)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/subscription")
		runtime.KeepAlive(e)
	}
}

// newHeapEngine is an engine with no network traffic and a fake clock, for
// the heap benchmarks (replies are applied through the state machine).
func newHeapEngine(b *testing.B) *Engine {
	b.Helper()
	cfg := DefaultConfig()
	cfg.Listen = []string{"udp:127.0.0.1:0"}
	e, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Clock: newFakeClock()})
	if err != nil {
		b.Fatal(err)
	}
	return e
}
