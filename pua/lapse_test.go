package pua

import (
	"testing"
	"time"
)

// TestTerminatedDialogLapses: a terminated dialog document published with
// a lifetime is neither refreshed nor removed: the engine drops the record
// (and its row) when the lifetime ends and the server's copy lapses. The
// call costs two PUBLISHes here, not three.
func TestTerminatedDialogLapses(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	e := newTestEngine(t, fs, clk, st, nil)
	key := Key{PresURI: alice, Event: "dialog", ID: "call"}
	mustWait(t, e, PublishRequest{Key: key, Body: dlgDoc("confirmed"), Flag: FlagDialogPublish})
	mustWait(t, e, PublishRequest{Key: key, Body: dlgDoc("terminated"), Expires: 10 * time.Second,
		Lifetime: 10 * time.Second, Flag: FlagDialogPublish})
	reqs := fs.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want initial and modify", len(reqs))
	}
	checkPublish(t, reqs[1], wire{ifMatch: headerValue(reqs[1], "SIP-If-Match"), body: string(dlgDoc("terminated")),
		expires: "10", event: "dialog"})
	waitFor(t, "terminated ETag stored", func() bool {
		r, ok := st.row(key, FlagDialogPublish)
		return ok && !r.Modified && r.DesiredExpires != 0
	})
	// Past the refresh time of a 10 s lease: nothing is sent.
	clk.Advance(6 * time.Second)
	if _, ok := e.Publication(key); !ok {
		t.Fatal("dropped before the end of its lifetime")
	}
	clk.Advance(5 * time.Second)
	waitFor(t, "record dropped", func() bool { _, ok := e.Publication(key); return !ok })
	waitFor(t, "row deleted", func() bool { _, ok := st.row(key, FlagDialogPublish); return !ok })
	if n := len(fs.Requests()); n != 2 {
		t.Fatalf("%d requests, want no refresh and no removal after the terminated document", n)
	}
}

// TestNonTerminatedLifetimeStillRemoved: a dialog document that is not
// terminated is removed at the end of its lifetime, as any publication.
func TestNonTerminatedLifetimeStillRemoved(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, nil)
	key := Key{PresURI: alice, Event: "dialog", ID: "call"}
	mustWait(t, e, PublishRequest{Key: key, Body: dlgDoc("confirmed"), Expires: 10 * time.Second,
		Lifetime: 10 * time.Second, Flag: FlagDialogPublish})
	clk.Advance(11 * time.Second)
	waitFor(t, "record dropped", func() bool { _, ok := e.Publication(key); return !ok })
	reqs := fs.Requests()
	last := reqs[len(reqs)-1]
	checkPublish(t, last, wire{ifMatch: headerValue(last, "SIP-If-Match"), expires: "0", event: "dialog"})
}

// TestLapseAfterRestart: a crash after the server accepted the terminated
// document and before the end of its lifetime. The restarted engine loads
// the row; nobody claims it (the tracker dropped the call) and the sweep
// leaves it to its lifetime; it is dropped then without a PUBLISH.
func TestLapseAfterRestart(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	key := Key{PresURI: alice, Event: "dialog", ID: "call"}
	r := storedPub(clk, alice, "dialog", "call", "e1", FlagDialogPublish, dlgDoc("terminated"))
	r.Expires = clk.Now().Add(5 * time.Second).Unix()
	r.DesiredExpires = r.Expires
	r.ReqExpires = 10
	st.put(r)
	e := newTestEngineOwners(t, fs, clk, st, nil, []int{FlagDialogPublish})
	e.ClaimsDone(FlagDialogPublish)
	if _, ok := e.Publication(key); !ok {
		t.Fatal("the sweep dropped a publication left to lapse")
	}
	clk.Advance(6 * time.Second)
	waitFor(t, "record dropped", func() bool { _, ok := e.Publication(key); return !ok })
	waitFor(t, "row deleted", func() bool { _, ok := st.row(key, FlagDialogPublish); return !ok })
	if n := len(fs.Requests()); n != 0 {
		t.Fatalf("%d requests for a terminated document the server holds, want none", n)
	}
}

// TestLapseModifiedAfterRestart: a crash after the terminated document was
// handed to the engine and before the server accepted it; the lifetime
// ended while the engine was down. The server still shows the call, so the
// restarted engine sends the terminated document (not a removal, which
// would leave the last document notified) and drops the record once it is
// accepted.
func TestLapseModifiedAfterRestart(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	key := Key{PresURI: alice, Event: "dialog", ID: "call"}
	r := storedPub(clk, alice, "dialog", "call", "e1", FlagDialogPublish, dlgDoc("terminated"))
	r.DesiredExpires = clk.Now().Add(-time.Second).Unix()
	r.ReqExpires = 10
	r.Modified = true
	st.put(r)
	e := newTestEngineOwners(t, fs, clk, st, nil, []int{FlagDialogPublish})
	waitFor(t, "terminated document sent", countIs(fs, 1))
	checkPublish(t, fs.Requests()[0], wire{ifMatch: "e1", body: string(dlgDoc("terminated")), expires: "1", event: "dialog"})
	waitFor(t, "record dropped", func() bool { _, ok := e.Publication(key); return !ok })
	waitFor(t, "row deleted", func() bool { _, ok := st.row(key, FlagDialogPublish); return !ok })
	if n := len(fs.Requests()); n != 1 {
		t.Fatalf("%d requests, want the terminated document only", n)
	}

	// The same crash with the terminated document accepted: nothing to do.
	fs2 := newFakeServer(t)
	st2 := newMemStore()
	r.Modified = false
	st2.put(r)
	e2 := newTestEngineOwners(t, fs2, clk, st2, nil, []int{FlagDialogPublish})
	if _, ok := e2.Publication(key); ok {
		t.Fatal("a lapsed terminated document was loaded")
	}
	waitFor(t, "row deleted", func() bool { _, ok := st2.row(key, FlagDialogPublish); return !ok })
	if n := len(fs2.Requests()); n != 0 {
		t.Fatalf("%d requests, want none", n)
	}
}

// TestTerminatedDialogRepublishedKeepsItsLifetime: the same terminated
// dialog document published again with a lifetime keeps the end of the
// first one: nothing is sent, and it lapses when that lifetime ends, so a
// document an owner repeats does not live on at the server for good.
func TestTerminatedDialogRepublishedKeepsItsLifetime(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, nil)
	key := Key{PresURI: alice, Event: "dialog", ID: "call"}
	mustWait(t, e, PublishRequest{Key: key, Body: dlgDoc("confirmed"), Flag: FlagDialogPublish})
	terminated := PublishRequest{Key: key, Body: dlgDoc("terminated"), Expires: 10 * time.Second,
		Lifetime: 10 * time.Second, Flag: FlagDialogPublish}
	mustWait(t, e, terminated)
	for range 3 {
		clk.Advance(3 * time.Second)
		if res := mustWait(t, e, terminated); res.Status != 200 {
			t.Fatalf("same document again: %+v", res)
		}
	}
	if n := len(fs.Requests()); n != 2 {
		t.Fatalf("%d requests, want the initial and the terminated document only", n)
	}
	clk.Advance(2 * time.Second) // 11 s after the first terminated document
	waitFor(t, "record dropped at the end of the first lifetime", func() bool { _, ok := e.Publication(key); return !ok })
	if n := len(fs.Requests()); n != 2 {
		t.Fatalf("%d requests, want no refresh and no removal", n)
	}
}
