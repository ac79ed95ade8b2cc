package pua

import (
	"context"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/internal/puatest"
)

// subWhere reports f of slaKey's record under its shard lock (nil when
// there is none).
func subWhere(e *Engine, f func(r *subRec) bool) bool {
	s := e.subShard(slaKey)
	s.mu.Lock()
	defer s.mu.Unlock()
	return f(s.subs[slaKey])
}

// subscribed makes slaKey's subscription (the server's first request) and
// returns its Call-ID.
func subscribed(t *testing.T, e *Engine, fs *fakeServer) string {
	t.Helper()
	if res, err := e.SubscribeWait(context.Background(), slaReq()); err != nil || res.Status != 200 {
		t.Fatalf("subscribe: %v %+v", err, res)
	}
	return fs.Requests()[0].CallID().Value()
}

// checkUnsubscribe checks that r is an un-SUBSCRIBE in the dialog callID.
func checkUnsubscribe(t *testing.T, r *sip.Request, callID string) {
	t.Helper()
	if headerValue(r, "Expires") != "0" || r.CallID().Value() != callID {
		t.Fatalf("not an un-SUBSCRIBE in the dialog:\n%s", r)
	}
}

// TestSubscribeChangeWhileRefusedInFlight: a change given while the
// initial SUBSCRIBE is in flight, which is then refused, is sent at once:
// nobody refused that state, so it does not wait for the refused retry.
func TestSubscribeChangeWhileRefusedInFlight(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e, _ := subEngine(t, fs, clk)
	fs.Push(puatest.Reply{Code: 403, Hold: true})
	go func() { _, _ = e.SubscribeWait(context.Background(), slaReq()) }()
	waitFor(t, "initial sent", countIs(fs, 1))
	changed := slaReq()
	changed.Expires = 300 * time.Second
	done := async(func(ctx context.Context) (Result, error) { return e.SubscribeWait(ctx, changed) })
	waitFor(t, "change given", func() bool {
		return subWhere(e, func(r *subRec) bool { return r != nil && r.expires == 300*time.Second })
	})
	fs.Release() // the first initial is refused
	if res := awaitResult(t, done, "the change (the clock does not move)"); res.Status != 200 {
		t.Fatalf("change result %+v", res)
	}
	reqs := fs.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	if got := headerValue(reqs[1], "Expires"); got != "300" {
		t.Fatalf("second SUBSCRIBE Expires %s, want 300", got)
	}
}

// TestResubscribeDuringUnsubscribeTerminatedNotify: subscribed again while
// the un-SUBSCRIBE is in flight, and the notifier's terminated NOTIFY for
// the old dialog (its answer to the un-SUBSCRIBE) comes before the 200:
// the new subscription is still made (a new initial SUBSCRIBE), and its
// waiter is answered by it.
func TestResubscribeDuringUnsubscribeTerminatedNotify(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e, _ := subEngine(t, fs, clk)
	if res, err := e.SubscribeWait(context.Background(), slaReq()); err != nil || res.Status != 200 {
		t.Fatalf("subscribe: %v %+v", err, res)
	}
	sub := fs.Requests()[0]
	info, _ := e.Subscription(slaKey)
	fs.Push(puatest.Reply{Code: 200, Hold: true})
	if err := e.Unsubscribe(slaKey); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "un-SUBSCRIBE sent", countIs(fs, 2))
	done := async(func(ctx context.Context) (Result, error) { return e.SubscribeWait(ctx, slaReq()) })
	waitFor(t, "subscribed again", func() bool { return subWhere(e, func(r *subRec) bool { return r != nil && !r.unsub }) })
	if res := notifySeq(t, fs, sub, info.RemoteTag, "terminated;reason=timeout", 2); res == nil || res.StatusCode != 200 {
		t.Fatalf("terminated NOTIFY answered %v", res)
	}
	fs.Release()
	if res := awaitResult(t, done, "the new subscription"); res.Status != 200 || res.Reason == "terminated" {
		t.Fatalf("new subscription's result %+v", res)
	}
	reqs := fs.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	if reqs[2].CallID().Value() == sub.CallID().Value() || headerValue(reqs[2], "Expires") == "0" {
		t.Fatalf("third request not a new initial SUBSCRIBE:\n%s", reqs[2])
	}
	if _, ok := e.Subscription(slaKey); !ok {
		t.Fatal("subscription not held")
	}
}

// TestUnsubscribeRetriedAfterTransientFailure: an un-SUBSCRIBE answered
// with a transient failure (5xx, no answer) is sent again in its dialog on
// the backoff, as a PUBLISH removal is: the far end may still hold the
// subscription.
func TestUnsubscribeRetriedAfterTransientFailure(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply puatest.Reply
	}{{"503", puatest.Reply{Code: 503}}, {"500", puatest.Reply{Code: 500}}, {"no answer", puatest.Reply{Drop: true}}} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFakeServer(t)
			clk := newFakeClock()
			e, _ := subEngine(t, fs, clk)
			callID := subscribed(t, e, fs)
			fs.Push(tc.reply)
			if err := e.Unsubscribe(slaKey); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "un-SUBSCRIBE failed", func() bool {
				return len(fs.Requests()) == 2 && subWhere(e, func(r *subRec) bool { return r != nil && !r.inFlight && r.backingOff })
			})
			clk.Advance(e.cfg.RetryMax)
			waitFor(t, "subscription gone", func() bool { _, ok := e.Subscription(slaKey); return !ok })
			reqs := fs.Requests()
			if len(reqs) != 3 {
				t.Fatalf("%d requests, want 3", len(reqs))
			}
			for _, r := range reqs[1:] {
				checkUnsubscribe(t, r, callID)
			}
		})
	}
}

// TestUnsubscribeDuringFailedRefresh: unsubscribed while a refresh is in
// flight, which fails (500): the far end keeps the subscription, so the
// un-SUBSCRIBE goes in its dialog instead of the dialog being forgotten.
func TestUnsubscribeDuringFailedRefresh(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e, _ := subEngine(t, fs, clk)
	callID := subscribed(t, e, fs)
	fs.Push(puatest.Reply{Code: 500, Hold: true})
	if err := e.Refresh(slaKey); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "refresh sent", countIs(fs, 2))
	if err := e.Unsubscribe(slaKey); err != nil {
		t.Fatal(err)
	}
	fs.Release()
	waitFor(t, "subscription gone", func() bool { _, ok := e.Subscription(slaKey); return !ok })
	reqs := fs.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	checkUnsubscribe(t, reqs[2], callID)
}

// TestResubscribeDuringUnsubscribeBackoff: subscribed again while a failed
// un-SUBSCRIBE waits for its retry, and the notifier's terminated NOTIFY
// for the old dialog comes then: the old dialog was left when the owner
// subscribed again, so the NOTIFY is answered 481, and the new
// subscription is not dropped with the old dialog.
func TestResubscribeDuringUnsubscribeBackoff(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e, _ := subEngine(t, fs, clk)
	callID := subscribed(t, e, fs)
	sub := fs.Requests()[0]
	info, _ := e.Subscription(slaKey)
	fs.Push(puatest.Reply{Code: 503})
	if err := e.Unsubscribe(slaKey); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "un-SUBSCRIBE failed", func() bool {
		return len(fs.Requests()) == 2 && subWhere(e, func(r *subRec) bool { return r != nil && !r.inFlight && r.backingOff })
	})
	done := async(func(ctx context.Context) (Result, error) { return e.SubscribeWait(ctx, slaReq()) })
	waitFor(t, "subscribed again", func() bool { return subWhere(e, func(r *subRec) bool { return r != nil && !r.unsub }) })
	if res := notifySeq(t, fs, sub, info.RemoteTag, "terminated;reason=timeout", 2); res == nil || res.StatusCode != 481 {
		t.Fatalf("terminated NOTIFY of the old dialog answered %v, want 481", res)
	}
	if res := awaitResult(t, done, "the new subscription"); res.Status != 200 || res.Reason == "terminated" {
		t.Fatalf("new subscription's result %+v", res)
	}
	reqs := fs.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	if reqs[2].CallID().Value() == callID || headerValue(reqs[2], "Expires") == "0" {
		t.Fatalf("third request not a new initial SUBSCRIBE:\n%s", reqs[2])
	}
	if s, ok := e.Subscription(slaKey); !ok || s.State != StateActive || s.CallID != reqs[2].CallID().Value() {
		t.Fatalf("subscription %+v %v, want the new one active", s, ok)
	}
}

// TestResubscribeDuringUnsubscribeBackoffGoesAtOnce: subscribed again
// while a failed un-SUBSCRIBE waits for its retry: the new subscription is
// made at once, in a new dialog, without waiting for that backoff (the
// clock does not move); the old dialog is not tried again.
func TestResubscribeDuringUnsubscribeBackoffGoesAtOnce(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e, _ := subEngine(t, fs, clk)
	callID := subscribed(t, e, fs)
	fs.Push(puatest.Reply{Code: 503})
	if err := e.Unsubscribe(slaKey); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "un-SUBSCRIBE failed", func() bool {
		return len(fs.Requests()) == 2 && subWhere(e, func(r *subRec) bool { return r != nil && !r.inFlight && r.backingOff })
	})
	done := async(func(ctx context.Context) (Result, error) { return e.SubscribeWait(ctx, slaReq()) })
	if res := awaitResult(t, done, "the new subscription (the clock does not move)"); res.Status != 200 {
		t.Fatalf("new subscription's result %+v", res)
	}
	reqs := fs.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	if tag, _ := reqs[2].To().Params.Get("tag"); tag != "" || reqs[2].CallID().Value() == callID || headerValue(reqs[2], "Expires") == "0" {
		t.Fatalf("third request not a new initial SUBSCRIBE:\n%s", reqs[2])
	}
	clk.Advance(e.cfg.RetryMax) // past the old backoff: nothing more
	time.Sleep(50 * time.Millisecond)
	if n := len(fs.Requests()); n != 3 {
		t.Fatalf("%d requests after the old backoff, want 3", n)
	}
	if s, ok := e.Subscription(slaKey); !ok || s.State != StateActive {
		t.Fatalf("subscription %+v %v", s, ok)
	}
}
