package pua

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/puatest"
)

// A refused publication is tried again after refused_retry_min, then
// after twice as long, until accepted; the refusals are counted and
// visible while they last.
func TestPublishRefusedRetriedSlowly(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e, m := newMeteredEngine(t, fs, clk, nil, func(c *Config) {
		c.RefusedRetryMin = 30 * time.Second
		c.RefusedRetryMax = 10 * time.Minute
	})
	fs.Push(puatest.Reply{Code: 403}, puatest.Reply{Code: 489})
	res, _ := e.PublishWait(context.Background(), pubReq("a"))
	if res.Status != 403 {
		t.Fatalf("result %+v", res)
	}
	p, _ := e.Publication(presKey)
	start := clk.Now()
	if p.State != StateFailed || p.LastStatus != 403 || p.Refusals != 1 ||
		p.NextRetry.Before(start.Add(15*time.Second)) || p.NextRetry.After(start.Add(30*time.Second)) {
		t.Fatalf("after one refusal: %+v", p)
	}
	if v := puatest.Metric(t, m, "puaside_pua_refused_total", map[string]string{"method": "PUBLISH", "status": "403"}); v != 1 {
		t.Fatalf("refused_total %v, want 1", v)
	}
	clk.Advance(14 * time.Second)
	time.Sleep(50 * time.Millisecond)
	if n := publishes(fs); n != 1 {
		t.Fatalf("%d PUBLISHes before refused_retry_min/2, want 1", n)
	}
	clk.Advance(16 * time.Second)
	waitFor(t, "first retry", countIs(fs, 2))
	waitFor(t, "second refusal", func() bool { p, _ := e.Publication(presKey); return p.Refusals == 2 })
	p, _ = e.Publication(presKey)
	now := clk.Now()
	if p.State != StateFailed || p.LastStatus != 489 ||
		p.NextRetry.Before(now.Add(30*time.Second)) || p.NextRetry.After(now.Add(60*time.Second)) {
		t.Fatalf("after two refusals (backoff doubles): %+v", p)
	}
	clk.Advance(60 * time.Second)
	waitFor(t, "second retry accepted", func() bool { p, _ := e.Publication(presKey); return p.State == StateActive })
	p, _ = e.Publication(presKey)
	if p.Refusals != 0 || !p.NextRetry.IsZero() || p.ETag == "" {
		t.Fatalf("accepted: %+v", p)
	}
	checkPublish(t, fs.Requests()[2], wire{body: string(pidf("a")), expires: "3600"})
	if v := puatest.Metric(t, m, "puaside_pua_refused_retries_total", map[string]string{"method": "PUBLISH"}); v != 2 {
		t.Fatalf("refused_retries_total %v, want 2", v)
	}
}

// The refused backoff stops growing at refused_retry_max.
func TestPublishRefusedBackoffCapped(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, func(c *Config) {
		c.RefusedRetryMin = 10 * time.Second
		c.RefusedRetryMax = 40 * time.Second
	})
	fs.SetDefault(puatest.Reply{Code: 404})
	if err := e.Publish(pubReq("a")); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 6; i++ {
		waitFor(t, "refusal", func() bool { p, _ := e.Publication(presKey); return p.Refusals == i })
		p, _ := e.Publication(presKey)
		if d := p.NextRetry.Sub(clk.Now()); d > 40*time.Second || d <= 0 {
			t.Fatalf("refusal %d: retry in %v, want (0, 40s]", i, d)
		}
		clk.Advance(40 * time.Second)
	}
}

// A 2xx without SIP-ETag is a refusal too: retried later.
func TestPublishWithoutETagRetried(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, nil)
	fs.Push(puatest.Reply{Code: 200, ETag: "-"})
	if _, err := e.PublishWait(context.Background(), pubReq("a")); err == nil {
		t.Fatal("want an error for a 2xx without SIP-ETag")
	}
	clk.Advance(e.cfg.RefusedRetryMin)
	waitFor(t, "accepted on retry", func() bool { p, _ := e.Publication(presKey); return p.State == StateActive && p.ETag != "" })
}

// A new state from the owner of a refused publication is sent at once and
// restarts the refused backoff.
func TestPublishRefusedChangeSentAtOnce(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, nil)
	fs.Push(puatest.Reply{Code: 403})
	if res, _ := e.PublishWait(context.Background(), pubReq("a")); res.Status != 403 {
		t.Fatalf("result %+v", res)
	}
	res := mustWait(t, e, pubReq("b"))
	if res.Status != 200 || len(fs.Requests()) != 2 {
		t.Fatalf("result %+v after %d requests", res, len(fs.Requests()))
	}
	if p, _ := e.Publication(presKey); p.Refusals != 0 || !p.NextRetry.IsZero() {
		t.Fatalf("info %+v", p)
	}
}

// A phone answering 489 to the BLA SUBSCRIBE while it boots gets the
// subscription later, without its owner asking again.
func TestSubscribeRefusedRetried(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e, _ := subEngine(t, fs, clk)
	fs.Push(puatest.Reply{Code: 489})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, _ := e.SubscribeWait(ctx, slaReq())
	if res.Status != 489 {
		t.Fatalf("result %+v", res)
	}
	s, _ := e.Subscription(slaKey)
	if s.State != StateFailed || s.Refusals != 1 || s.NextRetry.IsZero() {
		t.Fatalf("after the refusal: %+v", s)
	}
	clk.Advance(e.cfg.RefusedRetryMin)
	waitFor(t, "new SUBSCRIBE", countIs(fs, 2))
	waitFor(t, "active", func() bool { s, _ := e.Subscription(slaKey); return s.State == StateActive })
	s, _ = e.Subscription(slaKey)
	if s.Refusals != 0 || !s.NextRetry.IsZero() {
		t.Fatalf("accepted: %+v", s)
	}
	if got := fs.Requests()[1].Recipient.String(); got != "sip:line1@10.0.0.9:5062" {
		t.Fatalf("retry R-URI %s", got)
	}
}

// A global failure (6xx) is a refusal like a 4xx: counted with its
// status, visible while it lasts, and tried again after refused_retry_min
// without its owner asking again; a subscription answered 603 likewise.
func TestRefused6xxRetried(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e, m := newMeteredEngine(t, fs, clk, nil, nil)
	fs.Push(puatest.Reply{Code: 603})
	res, _ := e.PublishWait(context.Background(), pubReq("a"))
	if res.Status != 603 {
		t.Fatalf("result %+v", res)
	}
	p, _ := e.Publication(presKey)
	if p.State != StateFailed || p.LastStatus != 603 || p.Refusals != 1 || p.NextRetry.IsZero() {
		t.Fatalf("after a 603: %+v", p)
	}
	if v := puatest.Metric(t, m, "puaside_pua_refused_total", map[string]string{"method": "PUBLISH", "status": "603"}); v != 1 {
		t.Fatalf("refused_total{status=603} %v, want 1", v)
	}
	clk.Advance(e.cfg.RefusedRetryMin)
	waitFor(t, "PUBLISH retried after the 603", countIs(fs, 2))
	waitFor(t, "accepted on retry", func() bool { p, _ := e.Publication(presKey); return p.State == StateActive && p.ETag != "" })

	fs2 := newFakeServer(t)
	clk2 := newFakeClock()
	s2, _ := subEngine(t, fs2, clk2)
	fs2.Push(puatest.Reply{Code: 600})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, _ := s2.SubscribeWait(ctx, slaReq()); res.Status != 600 {
		t.Fatalf("SUBSCRIBE result %+v", res)
	}
	s, _ := s2.Subscription(slaKey)
	if s.State != StateFailed || s.Refusals != 1 || s.NextRetry.IsZero() {
		t.Fatalf("after a 600: %+v", s)
	}
	clk2.Advance(s2.cfg.RefusedRetryMin)
	waitFor(t, "SUBSCRIBE retried after the 600", countIs(fs2, 2))
	waitFor(t, "subscription active", func() bool { s, _ := s2.Subscription(slaKey); return s.State == StateActive })
}

// TestPublishRefusedWhileChangePending: a change given while the previous
// PUBLISH is in flight is sent as soon as that one is refused; it does not
// wait for the refused retry, since nobody refused it.
func TestPublishRefusedWhileChangePending(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, nil)
	mustWait(t, e, pubReq("a")) // etag1
	fs.Push(puatest.Reply{Code: 403, Hold: true})
	if err := e.Publish(pubReq("b")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "modify b sent", countIs(fs, 2))
	done := async(func(ctx context.Context) (Result, error) { return e.PublishWait(ctx, pubReq("c")) })
	waitFor(t, "change c given", func() bool {
		p, _ := e.Publication(presKey)
		return bytes.Equal(p.Body, pidf("c"))
	})
	fs.Release() // b is refused
	if res := awaitResult(t, done, "c (the clock does not move)"); res.Status != 200 {
		t.Fatalf("c result %+v", res)
	}
	reqs := fs.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	checkPublish(t, reqs[2], wire{ifMatch: "etag1", body: string(pidf("c")), expires: "3600"})
}

// TestRefusedTerminatedDocumentAtLifetimeEnd: a terminated dialog document
// with a lifetime that the server refuses is not sent again and again once
// the lifetime has ended (the refused retry was due at the end of the
// lifetime, and then at once, in a loop): the lit document the server
// holds instead is removed, once.
func TestRefusedTerminatedDocumentAtLifetimeEnd(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, func(c *Config) {
		c.RefusedRetryMin, c.RefusedRetryMax = 30*time.Second, 10*time.Minute
	})
	key := Key{PresURI: alice, Event: "dialog", ID: "call"}
	mustWait(t, e, PublishRequest{Key: key, Body: dlgDoc("confirmed"), Flag: FlagDialogPublish}) // etag1
	fs.Push(puatest.Reply{Code: 400})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, _ := e.PublishWait(ctx, PublishRequest{Key: key, Body: dlgDoc("terminated"), Expires: 10 * time.Second,
		Lifetime: 10 * time.Second, Flag: FlagDialogPublish})
	if res.Status != 400 {
		t.Fatalf("terminated document result %+v", res)
	}
	clk.Advance(11 * time.Second) // once, past the end of the lifetime
	waitFor(t, "publication gone", func() bool { _, ok := e.Publication(key); return !ok })
	time.Sleep(200 * time.Millisecond) // a loop would send on meanwhile
	reqs := fs.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3 (initial, refused terminated document, removal)", len(reqs))
	}
	checkPublish(t, reqs[2], wire{ifMatch: "etag1", expires: "0", event: "dialog"})
}

// TestSweptDialogRefusedIsRemoved: a swept dialog publication whose
// terminated document the server refuses is removed at once (its
// acceptance would have started the removal): the lit document does not
// stay at the server, retried on the refused backoff for good.
func TestSweptDialogRefusedIsRemoved(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	key := Key{PresURI: alice, Event: "dialog", ID: "call"}
	st.put(storedPub(clk, alice, "dialog", "call", "e1", FlagDialogPublish, dlgDoc("confirmed")))
	e := newTestEngineOwners(t, fs, clk, st, nil, []int{FlagDialogPublish})
	waitFor(t, "loaded publication refreshed", func() bool { p, _ := e.Publication(key); return p.LastStatus == 200 })
	etag := fs.Requests()[0]
	fs.Push(puatest.Reply{Code: 400})
	e.ClaimsDone(FlagDialogPublish)
	waitFor(t, "publication gone", func() bool { _, ok := e.Publication(key); return !ok })
	reqs := fs.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3 (refresh at start, refused terminated document, removal)", len(reqs))
	}
	checkPublish(t, etag, wire{ifMatch: "e1", expires: "3600", event: "dialog"})
	checkPublish(t, reqs[1], wire{ifMatch: "etag1", body: string(dlgDoc("terminated")), expires: "3600", event: "dialog"})
	checkPublish(t, reqs[2], wire{ifMatch: "etag1", expires: "0", event: "dialog"})
}

// TestRemoval423NotLooped: a 423 with Min-Expires to a removal (which asks
// for no interval to raise) is a refusal: the removal is not sent again at
// once, in a loop.
func TestRemoval423NotLooped(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, nil)
	mustWait(t, e, pubReq("open"))
	fs.Push(puatest.Reply{Code: 423, MinExpires: 60})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, _ := e.RemoveWait(ctx, presKey); res.Status != 423 {
		t.Fatalf("removal result %+v", res)
	}
	time.Sleep(200 * time.Millisecond) // a loop would send on meanwhile
	if n := len(fs.Requests()); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
	if _, ok := e.Publication(presKey); ok {
		t.Fatal("publication still listed after its refused removal")
	}
}

// TestRemovalRefusedAfterRepublish: published again while the removal is
// in flight, which the server then refuses: the new state is sent under
// the ETag the server still holds, not dropped with the removal.
func TestRemovalRefusedAfterRepublish(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply puatest.Reply
	}{{"423", puatest.Reply{Code: 423, MinExpires: 60, Hold: true}}, {"403", puatest.Reply{Code: 403, Hold: true}}} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFakeServer(t)
			e := newTestEngine(t, fs, newFakeClock(), nil, nil)
			mustWait(t, e, pubReq("a")) // etag1
			fs.Push(tc.reply)
			if err := e.Remove(presKey); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "removal sent", countIs(fs, 2))
			done := async(func(ctx context.Context) (Result, error) { return e.PublishWait(ctx, pubReq("b")) })
			waitFor(t, "published again", func() bool { p, ok := e.Publication(presKey); return ok && bytes.Equal(p.Body, pidf("b")) })
			fs.Release()
			if res := awaitResult(t, done, "b"); res.Status != 200 {
				t.Fatalf("b result %+v", res)
			}
			reqs := fs.Requests()
			if len(reqs) != 3 {
				t.Fatalf("%d requests, want 3", len(reqs))
			}
			checkPublish(t, reqs[2], wire{ifMatch: "etag1", body: string(pidf("b")), expires: "3600"})
		})
	}
}
