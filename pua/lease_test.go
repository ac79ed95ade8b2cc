package pua

import (
	"context"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/puatest"
)

// TestShortLeaseUntilETagStored: the initial PUBLISH asks initial_expires;
// the first refresh after the ETag is stored asks the full Expires.
func TestShortLeaseUntilETagStored(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	e := newTestEngine(t, fs, clk, st, func(c *Config) { c.InitialExpires = time.Minute })
	res := mustWait(t, e, pubReq("a"))
	if res.Expires != time.Minute {
		t.Fatalf("initial grant %v, want the short lease", res.Expires)
	}
	checkPublish(t, fs.Requests()[0], wire{body: string(pidf("a")), expires: "60"})
	waitFor(t, "ETag stored", func() bool { r, _ := st.row(presKey, FlagUsrloc); return r.ETag == "etag1" })
	clk.Advance(55 * time.Second)
	waitFor(t, "refresh", countIs(fs, 2))
	checkPublish(t, fs.Requests()[1], wire{ifMatch: "etag1", expires: "3600"})
}

// TestShortLeaseWhileStoreFails: an ETag that cannot be stored keeps the
// lease short.
func TestShortLeaseWhileStoreFails(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := &failingStore{memStore: newMemStore(), fail: true}
	e := newTestEngine(t, fs, clk, st, func(c *Config) { c.InitialExpires = time.Minute })
	mustWait(t, e, pubReq("a"))
	clk.Advance(55 * time.Second)
	waitFor(t, "refresh", countIs(fs, 2))
	checkPublish(t, fs.Requests()[1], wire{ifMatch: "etag1", expires: "60"})
	waitFor(t, "refresh accepted", func() bool { p, _ := e.Publication(presKey); return p.ETag == "etag2" })
	st.setFail(false)
	clk.Advance(time.Second) // write-behind tick
	waitFor(t, "ETag stored", func() bool { r, _ := st.row(presKey, FlagUsrloc); return r.ETag == "etag2" })
	clk.Advance(55 * time.Second)
	waitFor(t, "second refresh", countIs(fs, 3))
	checkPublish(t, fs.Requests()[2], wire{ifMatch: "etag2", expires: "3600"})
}

// TestDurableRemoval: a removal still unanswered at stop is finished by the
// next engine, which never refreshes the publication.
func TestDurableRemoval(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	e1 := newTestEngine(t, fs, clk, st, nil)
	mustWait(t, e1, pubReq("a"))
	waitFor(t, "ETag stored", func() bool { r, _ := st.row(presKey, FlagUsrloc); return r.ETag == "etag1" })
	fs.Push(puatest.Reply{Drop: true})
	if err := e1.Remove(presKey); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "removal intent stored", func() bool { r, _ := st.row(presKey, FlagUsrloc); return r.Removing })
	waitFor(t, "removal sent", countIs(fs, 2))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_ = e1.Stop(ctx)
	if r, ok := st.row(presKey, FlagUsrloc); !ok || !r.Removing || r.ETag != "etag1" {
		t.Fatalf("row after stop %+v (present %v)", r, ok)
	}

	e2 := newTestEngine(t, fs, clk, st, nil)
	waitFor(t, "removal finished", func() bool { _, ok := st.row(presKey, FlagUsrloc); return !ok })
	reqs := fs.Requests()
	for _, r := range reqs[2:] {
		checkPublish(t, r, wire{ifMatch: "etag1", expires: "0"})
	}
	if _, ok := e2.Publication(presKey); ok {
		t.Fatal("publication still held after the removal")
	}
}

// TestLifetimeEndedWhileDownIsRemoved: a stored publication whose lifetime
// ended while the engine was down, and that the server still holds, is
// removed at the server.
func TestLifetimeEndedWhileDownIsRemoved(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	r := storedPub(clk, alice, "presence", "usrloc", "e1", FlagUsrloc, pidf("a"))
	r.DesiredExpires = clk.Now().Add(-time.Second).Unix()
	st.put(r)
	newTestEngine(t, fs, clk, st, nil)
	waitFor(t, "removal", countIs(fs, 1))
	checkPublish(t, fs.Requests()[0], wire{ifMatch: "e1", expires: "0"})
}

// TestStopFlushOwnDeadline: the final write at stop runs even when the stop
// budget was spent waiting for a transaction.
func TestStopFlushOwnDeadline(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := &failingStore{memStore: newMemStore()}
	e := newTestEngine(t, fs, clk, st, func(c *Config) {
		c.SyncETags = false
		c.RequestTimeout = 5 * time.Second
	})
	fs.Push(puatest.Reply{Code: 200, Hold: true})
	if err := e.Publish(pubReq("a")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "PUBLISH in flight", countIs(fs, 1))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := e.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, ok := st.row(presKey, FlagUsrloc); !ok {
		t.Fatal("the desired state was not written at stop")
	}
}

// TestPendingModifySurvivesRestart: a change the server has not accepted
// at stop is sent by the next engine as a modify, not lost behind a refresh
// of the older document.
func TestPendingModifySurvivesRestart(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	e1 := newTestEngine(t, fs, clk, st, nil)
	mustWait(t, e1, pubReq("a"))
	waitFor(t, "ETag stored", func() bool { r, _ := st.row(presKey, FlagUsrloc); return r.ETag == "etag1" })
	fs.Push(puatest.Reply{Drop: true})
	if err := e1.Publish(pubReq("b")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "modify sent", countIs(fs, 2))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_ = e1.Stop(ctx)
	if r, _ := st.row(presKey, FlagUsrloc); !r.Modified || r.ETag != "etag1" {
		t.Fatalf("row after stop %+v", r)
	}
	newTestEngine(t, fs, clk, st, nil)
	waitFor(t, "modify after restart", countIs(fs, 3))
	checkPublish(t, fs.Requests()[2], wire{ifMatch: "etag1", body: string(pidf("b")), expires: "3600"})
	waitFor(t, "accepted and stored", func() bool { r, _ := st.row(presKey, FlagUsrloc); return r.ETag == "etag2" && !r.Modified })
}

// TestDurableUnsubscribe: a subscription stored while its un-SUBSCRIBE was
// unanswered is ended by the next engine, not refreshed.
func TestDurableUnsubscribe(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	st.put(Record{PresURI: "sip:line@example.com", WatcherURI: "sip:line@example.com", PresID: "bla-1",
		EventName: "dialog;sla", Flag: FlagBLASubscribe, CallID: "c1", FromTag: "f1", ToTag: "t1",
		CSeq: 3, RemoteContact: "sip:phone@" + fs.URI()[len("sip:"):], Expires: clk.Now().Add(time.Hour).Unix(),
		Removing: true})
	e := newTestEngine(t, fs, clk, st, nil)
	waitFor(t, "un-SUBSCRIBE", countIs(fs, 1))
	r := fs.Requests()[0]
	if r.Method != "SUBSCRIBE" || headerValue(r, "Expires") != "0" || r.CallID().Value() != "c1" {
		t.Fatalf("sent %s Expires %s Call-ID %s", r.Method, headerValue(r, "Expires"), r.CallID().Value())
	}
	waitFor(t, "subscription gone", func() bool { return len(e.Subscriptions()) == 0 })
	waitFor(t, "row deleted", func() bool { return st.rows.Len() == 0 })
}
