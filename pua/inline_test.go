package pua

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/puatest"
)

// pubHas reports whether key's publication exists and has, per f, the
// property asked (read with its shard locked).
func pubHas(e *Engine, key Key, f func(*pubRec) bool) bool {
	s := e.pubShard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.pubs[key]
	return r != nil && f(r)
}

// queueEmpty reports whether the workers have taken every queued record.
func queueEmpty(e *Engine) bool {
	e.queue.mu.Lock()
	defer e.queue.mu.Unlock()
	return e.queue.head == len(e.queue.items)
}

// inFlight reports whether key's publication has a PUBLISH on the wire.
func inFlight(e *Engine, key Key) bool {
	return pubHas(e, key, func(r *pubRec) bool { return r.inFlight })
}

// TestCallerSendsWhileASlotIsFree checks kickPubHere: while fewer than
// max_outstanding transactions are in flight, Publish and Remove send
// the PUBLISH on the caller's goroutine, before they return; once every
// slot is taken the publication waits in the queue for a worker, and
// max_outstanding still bounds what is in flight.
func TestCallerSendsWhileASlotIsFree(t *testing.T) {
	fs := newFakeServer(t)
	fs.SetDefault(puatest.Reply{Code: 200, Hold: true})
	e := newTestEngine(t, fs, newFakeClock(), nil, func(c *Config) { c.MaxOutstanding = 2 })
	if !e.sendsInline {
		t.Fatalf("server_address %s: not sent by the caller", e.cfg.ServerAddress)
	}
	key := func(i int) Key {
		return Key{PresURI: fmt.Sprintf("sip:u%d@example.com", i), Event: "presence", ID: "usrloc"}
	}
	for i := range 3 {
		if err := e.Publish(PublishRequest{Key: key(i), Body: pidf("x"), Flag: FlagUsrloc}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		if !inFlight(e, key(i)) {
			t.Fatalf("publication %d not sent when Publish returned", i)
		}
	}
	if inFlight(e, key(2)) {
		t.Fatal("a third PUBLISH in flight with max_outstanding 2")
	}
	fs.Release()
	waitFor(t, "all accepted", func() bool {
		for i := range 3 {
			if p, _ := e.Publication(key(i)); p.ETag == "" {
				return false
			}
		}
		return true
	})
	for k, n := range fs.MaxInFlight() {
		if n > 1 {
			t.Errorf("%s: %d in flight at once", k, n)
		}
	}
	if got := fs.Count(); got != 3 {
		t.Fatalf("%d PUBLISHes, want 3", got)
	}
	// A removal is sent by its caller too.
	fs.SetDefault(puatest.Reply{Code: 200})
	if err := e.Remove(key(0)); err != nil {
		t.Fatal(err)
	}
	if p, ok := e.Publication(key(0)); ok && !inFlight(e, key(0)) {
		t.Fatalf("removal not sent when Remove returned: %+v", p)
	}
}

// TestLiteralUDPHop: only a sip: URI with an IP address and UDP is sent
// without a lookup or a connection, so by the caller.
func TestLiteralUDPHop(t *testing.T) {
	for hop, want := range map[string]bool{
		"sip:127.0.0.1:5060":               true,
		"sip:[::1]:5060;transport=udp":     true,
		"sip:192.0.2.1;transport=UDP":      true,
		"sip:127.0.0.1:5060;transport=tcp": false,
		"sips:127.0.0.1:5061":              false,
		"sip:127.0.0.1:5061;transport=tls": false,
		"sip:presence.example.com":         false,
		"sip:presence.example.com;lr":      false,
		"":                                 false,
		"not a uri":                        false,
	} {
		if got := literalUDPHop(hop); got != want {
			t.Errorf("literalUDPHop(%q) = %v, want %v", hop, got, want)
		}
	}
}

// TestStopWhileCallersSend stops the engine while callers publish: Stop
// waits for the callers that send themselves, nothing is sent once it
// has returned, and later calls are refused.
func TestStopWhileCallersSend(t *testing.T) {
	fs := newFakeServer(t)
	fs.SetQuiet(true)
	cfg := testConfig(fs)
	e := startTestEngine(t, cfg, Options{Clock: newFakeClock()})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				key := Key{PresURI: fmt.Sprintf("sip:g%d-%d@example.com", g, i), Event: "presence", ID: "usrloc"}
				if err := e.Publish(PublishRequest{Key: key, Body: pidf("x"), Flag: FlagUsrloc}); errors.Is(err, ErrStopped) {
					return
				} else if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	waitFor(t, "some PUBLISHes", func() bool { return fs.Count() > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	n := fs.Count()
	wg.Wait()
	if err := e.Publish(pubReq("late")); !errors.Is(err, ErrStopped) {
		t.Fatalf("Publish after Stop: %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	if got := fs.Count(); got != n {
		t.Fatalf("%d PUBLISHes after Stop returned", got-n)
	}
}

// TestPublishBeforeStartWaits: a Publish before Start is not sent by its
// caller (the SIP stack is not up); Start sends it.
func TestPublishBeforeStartWaits(t *testing.T) {
	fs := newFakeServer(t)
	e, err := New(testConfig(fs), Options{Clock: newFakeClock(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Publish(pubReq("early")); err != nil {
		t.Fatal(err)
	}
	if inFlight(e, presKey) {
		t.Fatal("sent before Start")
	}
	startStopAtEnd(t, e)
	waitFor(t, "accepted after Start", func() bool { p, _ := e.Publication(presKey); return p.ETag != "" })
	if n := fs.Count(); n != 1 {
		t.Fatalf("%d PUBLISHes, want 1", n)
	}
}

// TestStopDropsWhatWorkersHold: a worker that took a record off the queue
// and waits for a transaction slot does not send it once Stop was called.
func TestStopDropsWhatWorkersHold(t *testing.T) {
	fs := newFakeServer(t)
	fs.SetDefault(puatest.Reply{Code: 200, Hold: true})
	e := newTestEngine(t, fs, newFakeClock(), nil, func(c *Config) { c.MaxOutstanding = 1 })
	for i := range 2 {
		key := Key{PresURI: fmt.Sprintf("sip:w%d@example.com", i), Event: "presence", ID: "usrloc"}
		if err := e.Publish(PublishRequest{Key: key, Body: pidf("x"), Flag: FlagUsrloc}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the second record taken by a worker", func() bool { return queueEmpty(e) })
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stopped <- e.Stop(ctx)
	}()
	waitFor(t, "Stop called", e.isStopped)
	fs.Release()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if n := fs.Count(); n != 1 {
		t.Fatalf("%d PUBLISHes, want 1: a worker sent after Stop", n)
	}
}

// TestPanickingResultOnTheCallerLeavesNoTrace: when the PUBLISH cannot be
// sent at all, its outcome is applied on the caller's goroutine; a panic
// of OnPublishResult there (recovered by the caller, as ingest does)
// leaves the slot free, the record out of flight and Stop able to end.
func TestPanickingResultOnTheCallerLeavesNoTrace(t *testing.T) {
	fs := newFakeServer(t)
	cfg := testConfig(fs)
	cfg.Listen = []string{"udp:127.0.0.1:0"}
	cfg.ServerAddress = "sip:[::1]:5060" // an IPv4 socket cannot send there
	e := startTestEngine(t, cfg, Options{Clock: newFakeClock(),
		OnPublishResult: func(Key, string, Result) { panic("result handler") }})
	func() {
		defer func() { _ = recover() }()
		_ = e.Publish(pubReq("x"))
	}()
	if n := len(e.slots); n != 0 {
		t.Fatalf("%d slots still taken", n)
	}
	if inFlight(e, presKey) {
		t.Fatal("record left in flight")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestStaleQueueEntryKeepsTheBackoff: a queue entry of a record that has
// since failed and is backing off (a worker held it while it waited for
// a slot) does not send before the retry is due.
func TestStaleQueueEntryKeepsTheBackoff(t *testing.T) {
	fs := newFakeServer(t)
	fs.Push(puatest.Reply{Code: 500})
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, nil)
	if err := e.Publish(pubReq("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "backing off", func() bool {
		return pubHas(e, presKey, func(r *pubRec) bool { return r.backingOff && !r.inFlight })
	})
	s := e.pubShard(presKey)
	s.mu.Lock()
	e.queue.push(s.pubs[presKey]) // the stale entry
	s.mu.Unlock()
	waitFor(t, "the entry taken", func() bool { return queueEmpty(e) })
	time.Sleep(50 * time.Millisecond)
	if n := fs.Count(); n != 1 {
		t.Fatalf("%d PUBLISHes before the retry is due, want 1", n)
	}
	clk.Advance(time.Hour)
	waitFor(t, "the retry", countIs(fs, 2))
}
