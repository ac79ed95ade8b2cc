package pua

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/puatest"
)

// outageConfig makes backoffs long (so that only the return flush can
// explain a prompt retry) and probes frequent.
func outageConfig(c *Config) {
	c.RetryMin = 30 * time.Second
	c.RetryMax = 10 * time.Minute
	c.ProbeInterval = time.Second
}

// advanceProbe advances the clock to the next probe and waits until its
// OPTIONS has been answered and, while the server is still down, the
// next one is armed (want timers pending).
func advanceProbe(t *testing.T, clk *fakeClock, fs *fakeServer, e *Engine, want int) {
	t.Helper()
	n := fs.OptionsSeen()
	clk.Advance(e.cfg.ProbeInterval)
	waitFor(t, "probe", func() bool { return fs.OptionsSeen() > n })
	waitFor(t, "probe handled", func() bool { return !e.reach.down.Load() || clk.Pending() == want })
}

// While the presence server does not answer, it is probed with OPTIONS
// and reported unready; when it answers again, the publications backing
// off are sent at once, not after their backoff.
func TestServerOutageProbedAndFlushedOnReturn(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e, m := newMeteredEngine(t, fs, clk, nil, outageConfig)
	fs.SetOptions(503)
	fs.Push(puatest.Reply{Drop: true})
	if err := e.Ready(context.Background()); err != nil {
		t.Fatalf("ready before any failure: %v", err)
	}
	if err := e.Publish(pubReq("a")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "timeout", func() bool { p, _ := e.Publication(presKey); return p.State == StateRetrying })
	err := e.Ready(context.Background())
	if err == nil || !strings.Contains(err.Error(), "presence server "+fs.URI()) {
		t.Fatalf("ready while down: %v", err)
	}
	if v := puatest.Metric(t, m, "puaside_presence_server_up", nil); v != 0 {
		t.Fatalf("server_up %v while down", v)
	}
	// A change made meanwhile waits with the record.
	if err := e.Publish(pubReq("b")); err != nil {
		t.Fatal(err)
	}
	// Two probes answered 503 (no Retry-After): still down; the record's
	// timer and the next probe are armed.
	advanceProbe(t, clk, fs, e, 2)
	advanceProbe(t, clk, fs, e, 2)
	if e.ServerReady(context.Background()) == nil || publishes(fs) != 1 {
		t.Fatalf("after failed probes: ready %v, %d PUBLISHes", e.ServerReady(context.Background()), publishes(fs))
	}
	fs.SetOptions(200)
	advanceProbe(t, clk, fs, e, 0)
	waitFor(t, "latest state sent on return", func() bool {
		p, _ := e.Publication(presKey)
		return p.State == StateActive && publishes(fs) == 2
	})
	checkPublish(t, fs.Requests()[1], wire{body: string(pidf("b")), expires: "3600"})
	if err := e.Ready(context.Background()); err != nil {
		t.Fatalf("ready after return: %v", err)
	}
	if v := puatest.Metric(t, m, "puaside_presence_server_up", nil); v != 1 {
		t.Fatalf("server_up %v after return", v)
	}
	if v := puatest.Metric(t, m, "puaside_presence_server_probes_total", map[string]string{"result": "reply"}); v != 3 {
		t.Fatalf("probes %v, want 3", v)
	}
	// Probing stops once the server is back.
	n := fs.OptionsSeen()
	clk.Advance(5 * e.cfg.ProbeInterval)
	time.Sleep(50 * time.Millisecond)
	if fs.OptionsSeen() != n {
		t.Fatalf("probes go on after the return")
	}
}

// Any reply from the server to another request also ends the outage and
// flushes the records backing off.
func TestServerReturnSeenInAReply(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, outageConfig)
	fs.SetOptions(503)
	fs.Push(puatest.Reply{Code: 504})
	if err := e.Publish(pubReq("a")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "504", func() bool { p, _ := e.Publication(presKey); return p.State == StateRetrying })
	other := Key{PresURI: "sip:bob@example.com", Event: "presence", ID: "usrloc"}
	if _, err := e.PublishWait(context.Background(), PublishRequest{Key: other, Body: pidf("bob"), Flag: FlagUsrloc}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "flushed", func() bool { p, _ := e.Publication(presKey); return p.State == StateActive })
	if fs.OptionsSeen() != 0 {
		t.Fatalf("%d probes", fs.OptionsSeen())
	}
}

// A 503 with Retry-After holds every retry towards the server (and the
// probe) until it ends, even when the server answers meanwhile.
func TestRetryAfterHonoured(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, func(c *Config) { c.ProbeInterval = time.Second })
	fs.Push(puatest.Reply{Code: 503, RetryAfter: 120})
	res, _ := e.PublishWait(context.Background(), pubReq("a"))
	if res.Status != 503 || res.RetryAfter != 120*time.Second {
		t.Fatalf("result %+v", res)
	}
	// Another publication is accepted meanwhile: the server is up, but
	// the first one still waits for the Retry-After.
	other := Key{PresURI: "sip:bob@example.com", Event: "presence", ID: "usrloc"}
	if _, err := e.PublishWait(context.Background(), PublishRequest{Key: other, Body: pidf("bob"), Flag: FlagUsrloc}); err != nil {
		t.Fatal(err)
	}
	for range 119 {
		clk.Advance(time.Second)
	}
	time.Sleep(50 * time.Millisecond)
	if n := publishes(fs); n != 2 {
		t.Fatalf("%d PUBLISHes within the Retry-After, want 2", n)
	}
	if fs.OptionsSeen() != 0 {
		t.Fatalf("probed within the Retry-After")
	}
	clk.Advance(2 * time.Second)
	waitFor(t, "retry after Retry-After", func() bool { p, _ := e.Publication(presKey); return p.State == StateActive })
}

func TestRetryAfterParse(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"120": 120 * time.Second, " 5 ": 5 * time.Second, "18000;duration=3600": 5 * time.Hour,
		"120 (I'm in a meeting)": 120 * time.Second, "": 0, "soon": 0, "12a": 0, "-5": 0,
		"Fri, 01 Dec 2026 10:00:00 GMT": 0,
	} {
		if got := retryAfter(in); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

// Store writes that keep failing make the engine unready; one success
// makes it ready again.
func TestStoreWritesReadiness(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := &failingStore{memStore: newMemStore(), fail: true, err: errors.New("disk I/O error")}
	e := newTestEngine(t, fs, clk, st, func(c *Config) { c.SyncETags = false })
	mustWait(t, e, pubReq("a"))
	for i := 0; i < 3; i++ {
		clk.Advance(e.cfg.UpdatePeriod)
		if err := e.StoreReady(context.Background()); err != nil {
			t.Fatalf("unready after %d failed writes within %v: %v", i+1, storeFailFor, err)
		}
	}
	clk.Advance(storeFailFor)
	err := e.Ready(context.Background())
	if err == nil || !strings.Contains(err.Error(), "disk I/O error") || !strings.Contains(err.Error(), "store writes failing") {
		t.Fatalf("ready with failing writes: %v", err)
	}
	st.setFail(false)
	clk.Advance(e.cfg.UpdatePeriod)
	if err := e.Ready(context.Background()); err != nil {
		t.Fatalf("ready after a successful write: %v", err)
	}
}

// A subscription to a presentity at the presence server backing off is
// sent again on the server's return too; a BLA subscription to a phone
// that does not answer says nothing of the presence server.
func TestServerOutageSubscriptions(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, outageConfig)
	phone := SubscribeRequest{SubKey: slaKey, Target: "sip:line1@127.0.0.1:9", Expires: 120 * time.Second, Flag: FlagBLASubscribe}
	if err := e.Subscribe(phone); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "phone unreachable", func() bool { s, _ := e.Subscription(slaKey); return s.State == StateRetrying })
	if err := e.ServerReady(context.Background()); err != nil {
		t.Fatalf("a phone's timeout made the presence server unready: %v", err)
	}

	fs.SetOptions(503)
	fs.Push(puatest.Reply{Drop: true})
	key := SubKey{PresURI: alice, WatcherURI: "sip:watcher@example.com", Event: "presence", ID: "rpc"}
	if err := e.Subscribe(SubscribeRequest{SubKey: key, Flag: FlagRPCSubscribe}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "timeout", func() bool { s, _ := e.Subscription(key); return s.State == StateRetrying })
	if e.ServerReady(context.Background()) == nil {
		t.Fatal("ready while the presence server does not answer")
	}
	fs.SetOptions(200)
	n := fs.OptionsSeen()
	clk.Advance(e.cfg.ProbeInterval)
	waitFor(t, "probe", func() bool { return fs.OptionsSeen() > n })
	waitFor(t, "subscribed on return", func() bool { s, _ := e.Subscription(key); return s.State == StateActive })
	if s, _ := e.Subscription(slaKey); s.State != StateRetrying {
		t.Fatalf("the phone's subscription was flushed too: %+v", s)
	}
}

// WriteHealth turns failing only after storeFailWrites failures in a row
// over storeFailFor, and one success clears it.
func TestWriteHealth(t *testing.T) {
	clk := newFakeClock()
	h := NewWriteHealth(clk)
	boom := errors.New("no such table: puaside_contacts")
	h.Note(boom)
	h.Note(boom)
	clk.Advance(storeFailFor)
	if err := h.Err(); err != nil {
		t.Fatalf("failing after %d failures: %v", 2, err)
	}
	h.Note(boom)
	if err := h.Err(); err == nil || !errors.Is(err, boom) {
		t.Fatalf("after 3 failures over %v: %v", storeFailFor, err)
	}
	h.Note(nil)
	if err := h.Err(); err != nil {
		t.Fatalf("after a success: %v", err)
	}
	h.Note(boom)
	h.Note(boom)
	h.Note(boom)
	if err := h.Err(); err != nil {
		t.Fatalf("3 failures within an instant: %v", err)
	}
}

// TestRetryAfterOfUnsubscribeHonoured: a 503 with Retry-After to an
// un-SUBSCRIBE sent to the presence server holds off the retries towards
// it as one to a PUBLISH does: the un-SUBSCRIBE's own retry, and that of a
// PUBLISH failing meanwhile, wait for its end.
func TestRetryAfterOfUnsubscribeHonoured(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, func(c *Config) { c.ProbeInterval = time.Second })
	key := SubKey{PresURI: alice, WatcherURI: "sip:watcher@example.com", Event: "presence", ID: "rpc"}
	if res, err := e.SubscribeWait(context.Background(), SubscribeRequest{SubKey: key, Flag: FlagRPCSubscribe}); err != nil || res.Status != 200 {
		t.Fatalf("subscribe: %v %+v", err, res)
	}
	fs.Push(puatest.Reply{Code: 503, RetryAfter: 120})
	if err := e.Unsubscribe(key); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "un-SUBSCRIBE failed", func() bool { s, _ := e.Subscription(key); return s.State == StateRetrying })
	fs.Push(puatest.Reply{Code: 503})
	if res, _ := e.PublishWait(context.Background(), pubReq("a")); res.Status != 503 {
		t.Fatalf("publish result %+v", res)
	}
	for range 119 {
		clk.Advance(time.Second)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(fs.Requests()); n != 3 {
		t.Fatalf("%d requests within the Retry-After, want 3 (no retry)", n)
	}
	clk.Advance(2 * time.Second)
	waitFor(t, "un-SUBSCRIBE retried", func() bool { _, ok := e.Subscription(key); return !ok })
	waitFor(t, "PUBLISH retried", func() bool { p, _ := e.Publication(presKey); return p.State == StateActive })
}
