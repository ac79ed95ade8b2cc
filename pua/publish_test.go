package pua

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/internal/puatest"
)

const alice = "sip:alice@example.com"

var presKey = Key{PresURI: alice, Event: "presence", ID: "usrloc"}

func pidf(note string) []byte {
	return []byte(`<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com"><tuple id="t1"><status><basic>open</basic></status><note>` + note + `</note></tuple></presence>`)
}

func pubReq(note string) PublishRequest {
	return PublishRequest{Key: presKey, Body: pidf(note), Flag: FlagUsrloc}
}

func mustWait(t *testing.T, e *Engine, req PublishRequest) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := e.PublishWait(ctx, req)
	if err != nil {
		t.Fatalf("PublishWait: %v (%+v)", err, res)
	}
	return res
}

// wire describes what one PUBLISH on the wire must look like.
type wire struct {
	ifMatch string // "" = absent
	body    string // "" = no body
	expires string
	event   string // "" = presence
}

func checkPublish(t *testing.T, req *sip.Request, w wire) {
	t.Helper()
	if req.Method != sip.PUBLISH {
		t.Fatalf("method %s", req.Method)
	}
	if got := req.Recipient.String(); got != alice {
		t.Errorf("R-URI %q, want %q", got, alice)
	}
	if got := req.To().Address.String(); got != alice {
		t.Errorf("To %q", got)
	}
	if got := req.From().Address.String(); got != alice {
		t.Errorf("From %q", got)
	}
	if tag, _ := req.From().Params.Get("tag"); tag == "" {
		t.Errorf("From without tag")
	}
	event, ctype := "presence", "application/pidf+xml"
	if w.event != "" {
		event, ctype = w.event, "application/dialog-info+xml"
	}
	if got := headerValue(req, "Event"); got != event {
		t.Errorf("Event %q, want %q", got, event)
	}
	if got := headerValue(req, "Expires"); got != w.expires {
		t.Errorf("Expires %q, want %q", got, w.expires)
	}
	if got := headerValue(req, "SIP-If-Match"); got != w.ifMatch {
		t.Errorf("SIP-If-Match %q, want %q", got, w.ifMatch)
	}
	if got := string(req.Body()); got != w.body {
		t.Errorf("body %q, want %q", got, w.body)
	}
	ct := headerValue(req, "Content-Type")
	if w.body != "" && ct != ctype {
		t.Errorf("Content-Type %q", ct)
	}
	if w.body == "" && ct != "" {
		t.Errorf("Content-Type %q on a body-less PUBLISH", ct)
	}
	if via := req.Via(); via.Host != "127.0.0.1" || via.Port == 0 {
		t.Errorf("Via sent-by %s:%d", via.Host, via.Port)
	}
}

func nreq(fs *fakeServer) func() bool {
	return func() bool { return len(fs.Requests()) > 0 }
}

func countIs(fs *fakeServer, n int) func() bool {
	return func() bool { return len(fs.Requests()) >= n }
}

func TestPublishLifecycle(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, nil)

	res := mustWait(t, e, pubReq("one"))
	if res.Status != 200 || res.ETag != "etag1" || res.Expires != time.Hour {
		t.Fatalf("initial result %+v", res)
	}
	res = mustWait(t, e, pubReq("two"))
	if res.ETag != "etag2" {
		t.Fatalf("modify result %+v", res)
	}
	// Refresh before expiry: at 3600 − 360 s (10 %) minus jitter.
	info, _ := e.Publication(presKey)
	if d := info.NextRefresh.Sub(clk.Now()); d > 3240*time.Second || d < 3100*time.Second {
		t.Fatalf("next refresh in %v", d)
	}
	clk.Advance(3241 * time.Second)
	waitFor(t, "refresh", countIs(fs, 3))
	waitFor(t, "refresh accepted", func() bool { p, _ := e.Publication(presKey); return p.ETag == "etag3" })
	rres, err := e.RemoveWait(context.Background(), presKey)
	if err != nil || rres.Status != 200 {
		t.Fatalf("remove: %v %+v", err, rres)
	}
	reqs := fs.Requests()
	if len(reqs) != 4 {
		t.Fatalf("%d requests, want 4", len(reqs))
	}
	checkPublish(t, reqs[0], wire{body: string(pidf("one")), expires: "3600"})
	checkPublish(t, reqs[1], wire{ifMatch: "etag1", body: string(pidf("two")), expires: "3600"})
	checkPublish(t, reqs[2], wire{ifMatch: "etag2", expires: "3600"})
	checkPublish(t, reqs[3], wire{ifMatch: "etag3", expires: "0"})
	if _, ok := e.Publication(presKey); ok {
		t.Fatal("publication still listed after remove")
	}
	if len(e.Publications()) != 0 {
		t.Fatal("Publications not empty")
	}
}

func TestPublishCoalescesWhileInFlight(t *testing.T) {
	fs := newFakeServer(t)
	e := newTestEngine(t, fs, newFakeClock(), nil, nil)
	fs.Push(puatest.Reply{Code: 200, Hold: true})
	if err := e.Publish(pubReq("1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first PUBLISH", nreq(fs))
	for _, n := range []string{"2", "3"} {
		if err := e.Publish(pubReq(n)); err != nil {
			t.Fatal(err)
		}
	}
	done := async(func(ctx context.Context) (Result, error) { return e.PublishWait(ctx, pubReq("4")) })
	waitFor(t, "waiter registered", func() bool {
		s := e.pubShard(presKey)
		s.mu.Lock()
		defer s.mu.Unlock()
		r := s.pubs[presKey]
		return r.rare != nil && len(r.rare.waiters) == 1
	})
	if n := len(fs.Requests()); n != 1 {
		t.Fatalf("%d requests while the first is held", n)
	}
	fs.Release()
	if res := awaitResult(t, done, "the coalesced change"); res.Status != 200 {
		t.Fatalf("result %+v", res)
	}
	reqs := fs.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2 (coalesced)", len(reqs))
	}
	checkPublish(t, reqs[1], wire{ifMatch: "etag1", body: string(pidf("4")), expires: "3600"})
	for k, n := range fs.MaxInFlight() {
		if n != 1 {
			t.Errorf("%s: %d requests in flight at once", k, n)
		}
	}
}

func TestPublish412StartsAnew(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, nil)
	mustWait(t, e, pubReq("a"))
	fs.Push(puatest.Reply{Code: 412})
	res := mustWait(t, e, pubReq("b"))
	if res.Status != 200 || res.ETag != "etag2" {
		t.Fatalf("result %+v", res)
	}
	// 412 on a refresh too: the full body goes out again.
	fs.Push(puatest.Reply{Code: 412})
	clk.Advance(time.Hour)
	waitFor(t, "refresh and new initial", countIs(fs, 5))
	reqs := fs.Requests()
	checkPublish(t, reqs[1], wire{ifMatch: "etag1", body: string(pidf("b")), expires: "3600"})
	checkPublish(t, reqs[2], wire{body: string(pidf("b")), expires: "3600"})
	checkPublish(t, reqs[3], wire{ifMatch: "etag2", expires: "3600"})
	checkPublish(t, reqs[4], wire{body: string(pidf("b")), expires: "3600"})
}

func TestPublish423UsesMinExpires(t *testing.T) {
	fs := newFakeServer(t)
	e := newTestEngine(t, fs, newFakeClock(), nil, nil)
	fs.Push(puatest.Reply{Code: 423, MinExpires: 7200})
	req := pubReq("x")
	req.Expires = 60 * time.Second
	res := mustWait(t, e, req)
	if res.Status != 200 {
		t.Fatalf("result %+v", res)
	}
	reqs := fs.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	checkPublish(t, reqs[0], wire{body: string(pidf("x")), expires: "60"})
	checkPublish(t, reqs[1], wire{body: string(pidf("x")), expires: "7200"})
}

func TestPublishBackoffKeepsLatest(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first puatest.Reply
	}{
		{"500", puatest.Reply{Code: 500}},
		{"408", puatest.Reply{Code: 408}},
		{"no puatest.Reply", puatest.Reply{Drop: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFakeServer(t)
			clk := newFakeClock()
			e := newTestEngine(t, fs, clk, nil, nil)
			fs.Push(tc.first)
			res, err := e.PublishWait(context.Background(), pubReq("old"))
			if tc.first.Drop {
				if err == nil || res.Status != 0 {
					t.Fatalf("want a timeout, got %v %+v", err, res)
				}
			} else if res.Status != tc.first.Code {
				t.Fatalf("result %+v %v", res, err)
			}
			if p, _ := e.Publication(presKey); p.State != StateRetrying {
				t.Fatalf("state %q", p.State)
			}
			if err := e.Publish(pubReq("new")); err != nil {
				t.Fatal(err)
			}
			if n := len(fs.Requests()); n != 1 {
				t.Fatalf("%d requests during backoff", n)
			}
			clk.Advance(e.cfg.RetryMax)
			waitFor(t, "retry", countIs(fs, 2))
			waitFor(t, "active", func() bool { p, _ := e.Publication(presKey); return p.State == StateActive })
			reqs := fs.Requests()
			checkPublish(t, reqs[1], wire{body: string(pidf("new")), expires: "3600"})
		})
	}
}

// removeDuringRetry publishes first (accepted), then second, which the
// server answers 500 so that it waits for its retry; meanwhile it asks for
// the publication's removal, queues then for the server's next replies,
// lets the retry time pass and waits for the removal's result, whose status
// must be want. It returns every request the server got.
func removeDuringRetry(t *testing.T, fs *fakeServer, clk *fakeClock, e *Engine, first, second PublishRequest, want int, then ...puatest.Reply) []*sip.Request {
	t.Helper()
	mustWait(t, e, first) // etag1
	fs.Push(puatest.Reply{Code: 500})
	if res, _ := e.PublishWait(context.Background(), second); res.Status != 500 {
		t.Fatalf("result %+v", res)
	}
	key := first.Key
	done := async(func(ctx context.Context) (Result, error) { return e.RemoveWait(ctx, key) })
	waitFor(t, "removal asked", func() bool {
		s := e.pubShard(key)
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.pubs[key] != nil && s.pubs[key].remove
	})
	fs.Push(then...)
	clk.Advance(e.cfg.RetryMax)
	if res := awaitResult(t, done, "the removal"); res.Status != want {
		t.Fatalf("removal result %+v, want status %d", res, want)
	}
	return fs.Requests()
}

// TestRemovalSendsTheUnsentDocumentFirst: a removal asked while the last
// document (usrloc's closed, say) has not reached the server, because its
// PUBLISH failed and waits for its retry, does not skip that document: the
// retry sends it, and the removal follows once it is accepted. A server
// that answers a removal 200 and then fails to delete the row (Kamailio's
// presence on a locked database) keeps that document, not the older, lit
// one.
func TestRemovalSendsTheUnsentDocumentFirst(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, nil)
	reqs := removeDuringRetry(t, fs, clk, e, pubReq("open"), pubReq("closed"), 200)
	if len(reqs) != 4 {
		t.Fatalf("%d requests, want 4", len(reqs))
	}
	checkPublish(t, reqs[1], wire{ifMatch: "etag1", body: string(pidf("closed")), expires: "3600"})
	// Ahead of the removal the document asks for a short Expires only.
	checkPublish(t, reqs[2], wire{ifMatch: "etag1", body: string(pidf("closed")), expires: "30"})
	checkPublish(t, reqs[3], wire{ifMatch: "etag2", expires: "0"})
	if _, ok := e.Publication(presKey); ok {
		t.Fatal("publication still listed after its removal")
	}
}

// TestRemovalAfterForcedRefresh: a refresh asked for by ETag (same
// document) that waits for its retry leaves nothing to send ahead of a
// removal: the server holds that document already (under the ETag of the
// refresh before, which carries it over), so the removal goes alone.
func TestRemovalAfterForcedRefresh(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, nil)
	mustWait(t, e, pubReq("open")) // etag1
	refresh := func(etag string) PublishRequest {
		r := pubReq("open")
		r.IfMatch = etag
		return r
	}
	reqs := removeDuringRetry(t, fs, clk, e, refresh("etag1"), refresh("etag2"), 200)
	if len(reqs) != 4 {
		t.Fatalf("%d requests, want 4", len(reqs))
	}
	checkPublish(t, reqs[1], wire{ifMatch: "etag1", expires: "3600"})
	checkPublish(t, reqs[2], wire{ifMatch: "etag2", expires: "3600"})
	checkPublish(t, reqs[3], wire{ifMatch: "etag2", expires: "0"})
}

// TestForcedRefreshThenChange: a refresh asked for by ETag while the
// timed refresh waits for its retry, then a change: the retry is a modify
// with the change's document, not the asked refresh (no document), which
// would count the change as sent.
func TestForcedRefreshThenChange(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, nil)
	mustWait(t, e, pubReq("open")) // etag1
	fs.Push(puatest.Reply{Code: 500})
	clk.Advance(time.Hour) // the refresh falls due and fails
	waitFor(t, "failed refresh", func() bool { p, _ := e.Publication(presKey); return p.LastStatus == 500 })
	refresh := pubReq("open")
	refresh.IfMatch = "etag1"
	if err := e.Publish(refresh); err != nil {
		t.Fatal(err)
	}
	done := async(func(ctx context.Context) (Result, error) { return e.PublishWait(ctx, pubReq("closed")) })
	waitFor(t, "change given", func() bool {
		p, _ := e.Publication(presKey)
		return bytes.Equal(p.Body, pidf("closed"))
	})
	clk.Advance(e.cfg.RetryMax)
	if res := awaitResult(t, done, "the change"); res.Status != 200 {
		t.Fatalf("change result %+v", res)
	}
	reqs := fs.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	checkPublish(t, reqs[1], wire{ifMatch: "etag1", expires: "3600"})
	checkPublish(t, reqs[2], wire{ifMatch: "etag1", body: string(pidf("closed")), expires: "3600"})
}

// TestRemovalAfterClaimOfLoadedRemoval: a stored publication whose removal
// was pending, claimed and then removed again, sends no document ahead of
// the removal: the server holds the stored document (the row is not
// marked modified), though the claim moved the generation.
func TestRemovalAfterClaimOfLoadedRemoval(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	row := storedPub(clk, alice, "presence", presKey.ID, "etag-stored", FlagRPCPublish, pidf("open"))
	row.Removing = true
	st.put(row)
	fs.Push(puatest.Reply{Code: 500}, puatest.Reply{Code: 500})
	e := newTestEngine(t, fs, clk, st, nil)
	waitFor(t, "stored removal failed", func() bool { p, _ := e.Publication(presKey); return p.LastStatus == 500 })
	if !e.Claim(presKey) {
		t.Fatal("claim: publication not held")
	}
	clk.Advance(e.cfg.RetryMax) // past the failed removal's retry
	waitFor(t, "claimed state sent and failed", func() bool {
		s := e.pubShard(presKey)
		s.mu.Lock()
		defer s.mu.Unlock()
		r := s.pubs[presKey]
		return len(fs.Requests()) == 2 && r != nil && !r.inFlight && r.backingOff
	})
	done := async(func(ctx context.Context) (Result, error) { return e.RemoveWait(ctx, presKey) })
	waitFor(t, "removal asked", func() bool {
		s := e.pubShard(presKey)
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.pubs[presKey] != nil && s.pubs[presKey].remove
	})
	clk.Advance(e.cfg.RetryMax)
	if res := awaitResult(t, done, "the removal"); res.Status != 200 {
		t.Fatalf("removal result %+v", res)
	}
	reqs := fs.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	checkPublish(t, reqs[0], wire{ifMatch: "etag-stored", expires: "0"})
	checkPublish(t, reqs[2], wire{ifMatch: "etag-stored", expires: "0"})
}

// TestRemovalAheadDocumentTakesMinExpires: the short Expires of the
// document sent ahead of a removal gives way to a server's Min-Expires
// (423), and the removal follows once the document is accepted.
func TestRemovalAheadDocumentTakesMinExpires(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, nil)
	reqs := removeDuringRetry(t, fs, clk, e, pubReq("open"), pubReq("closed"), 200, puatest.Reply{Code: 423, MinExpires: 60})
	if len(reqs) != 5 {
		t.Fatalf("%d requests, want 5", len(reqs))
	}
	checkPublish(t, reqs[2], wire{ifMatch: "etag1", body: string(pidf("closed")), expires: "30"})
	checkPublish(t, reqs[3], wire{ifMatch: "etag1", body: string(pidf("closed")), expires: "60"})
	checkPublish(t, reqs[4], wire{ifMatch: "etag2", expires: "0"})
}

// TestRemovalAfterRefusedDocument: when the document sent ahead of a
// removal is refused outright (not a transient failure: a final error, a
// 423 without a usable Min-Expires, a 2xx without SIP-ETag), the removal
// goes at once instead of waiting on the refusal's slow retry (the clock
// moves once, past the failed document's retry, which arms the refused
// retry later still); when it finds the publication gone (412), there is
// nothing left to remove.
func TestRemovalAfterRefusedDocument(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reply   puatest.Reply
		want    int  // the removal's result
		removal bool // a removal goes out
	}{
		{"403", puatest.Reply{Code: 403}, 200, true},
		{"423 without Min-Expires", puatest.Reply{Code: 423}, 200, true},
		{"2xx without SIP-ETag", puatest.Reply{Code: 200, ETag: "-"}, 200, true},
		{"412", puatest.Reply{Code: 412}, 412, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFakeServer(t)
			clk := newFakeClock()
			e := newTestEngine(t, fs, clk, nil, nil)
			reqs := removeDuringRetry(t, fs, clk, e, pubReq("open"), pubReq("closed"), tc.want, tc.reply)
			n := 3
			if tc.removal {
				n = 4
			}
			if len(reqs) != n {
				t.Fatalf("%d requests, want %d", len(reqs), n)
			}
			checkPublish(t, reqs[2], wire{ifMatch: "etag1", body: string(pidf("closed")), expires: "30"})
			if tc.removal {
				checkPublish(t, reqs[3], wire{ifMatch: "etag1", expires: "0"})
			}
			if _, ok := e.Publication(presKey); ok {
				t.Fatal("publication still listed after its removal")
			}
		})
	}
}

// TestRemovalAfterRefusal: a document the server refused outright is not
// sent again ahead of the removal that follows.
func TestRemovalAfterRefusal(t *testing.T) {
	fs := newFakeServer(t)
	e := newTestEngine(t, fs, newFakeClock(), nil, nil)
	mustWait(t, e, pubReq("open")) // etag1
	fs.Push(puatest.Reply{Code: 415})
	if res, _ := e.PublishWait(context.Background(), pubReq("closed")); res.Status != 415 {
		t.Fatalf("result %+v", res)
	}
	if res, err := e.RemoveWait(context.Background(), presKey); err != nil || res.Status != 200 {
		t.Fatalf("remove: %v %+v", err, res)
	}
	reqs := fs.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	checkPublish(t, reqs[2], wire{ifMatch: "etag1", expires: "0"})
}

func TestPublishShortGrantRefreshedInTime(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, nil)
	fs.Push(puatest.Reply{Code: 200, Expires: 30})
	res := mustWait(t, e, pubReq("a"))
	if res.Expires != 30*time.Second {
		t.Fatalf("granted %v", res.Expires)
	}
	p, _ := e.Publication(presKey)
	if d := p.NextRefresh.Sub(clk.Now()); d < 23*time.Second || d > 25*time.Second {
		t.Fatalf("refresh in %v for a 30 s grant", d)
	}
	clk.Advance(25 * time.Second)
	waitFor(t, "refresh", countIs(fs, 2))
	checkPublish(t, fs.Requests()[1], wire{ifMatch: "etag1", expires: "3600"})
}

func TestPublishLifetimeEnds(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, nil)
	req := pubReq("a")
	req.Lifetime = 100 * time.Second
	mustWait(t, e, req)
	clk.Advance(100 * time.Second)
	waitFor(t, "remove", countIs(fs, 2))
	checkPublish(t, fs.Requests()[0], wire{body: string(pidf("a")), expires: "100"})
	checkPublish(t, fs.Requests()[1], wire{ifMatch: "etag1", expires: "0"})
	waitFor(t, "record gone", func() bool { _, ok := e.Publication(presKey); return !ok })
}

func TestPublishRefusedRequests(t *testing.T) {
	fs := newFakeServer(t)
	e := newTestEngine(t, fs, newFakeClock(), nil, nil)
	mustWait(t, e, pubReq("a"))
	for _, tc := range []struct {
		name string
		mod  func(*PublishRequest)
		is   error
	}{
		{"unknown event", func(r *PublishRequest) { r.Event = "nope" }, ErrUnknownEvent},
		{"bad uri", func(r *PublishRequest) { r.PresURI = "alice" }, nil},
		{"tel uri", func(r *PublishRequest) { r.PresURI = "tel:+123" }, nil},
		{"empty body", func(r *PublishRequest) { r.Body = nil }, nil},
		{"wrong etag", func(r *PublishRequest) { r.IfMatch = "other" }, ErrWrongETag},
		{"header injection", func(r *PublishRequest) { r.ExtraHeaders = []Header{{"X", "a\r\nB: c"}} }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := pubReq("b")
			tc.mod(&r)
			err := e.Publish(r)
			if err == nil {
				t.Fatal("accepted")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("error %v, want %v", err, tc.is)
			}
		})
	}
	r := pubReq("c")
	r.IfMatch = "etag1"
	if res := mustWait(t, e, r); res.ETag != "etag2" {
		t.Fatalf("IfMatch publish %+v", res)
	}
	if n := len(fs.Requests()); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
	if err := e.RegisterEvent("as-feature-event", "application/x-as-feature-event+xml"); err != nil {
		t.Fatal(err)
	}
	if err := e.Publish(PublishRequest{Key: Key{PresURI: alice, Event: "as-feature-event"}, Body: []byte("x")}); err != nil {
		t.Fatalf("registered event refused: %v", err)
	}
}

// TestPublishFlagBeyond32Bits: a record keeps 32 bits of its owner's flag,
// as the store does, so a wider one is refused, not cut.
func TestPublishFlagBeyond32Bits(t *testing.T) {
	if strconv.IntSize == 32 {
		t.Skip("an int of 32 bits: every flag fits")
	}
	fs := newFakeServer(t)
	e := newTestEngine(t, fs, newFakeClock(), nil, nil)
	r := pubReq("a")
	r.Flag = math.MaxInt32
	r.Flag++
	if err := e.Publish(r); err == nil {
		t.Fatal("accepted")
	}
	if _, ok := e.Publication(presKey); ok {
		t.Fatal("refused publication held")
	}
	r.Flag = math.MaxInt32
	if res := mustWait(t, e, r); res.Status != 200 {
		t.Fatalf("result %+v", res)
	}
	if pi, _ := e.Publication(presKey); pi.Flag != math.MaxInt32 {
		t.Fatalf("flag %d, want %d", pi.Flag, math.MaxInt32)
	}
}

// TestStoredFlagBeyond32BitsNotLoaded: a stored publication row whose flag
// does not fit the 32 bits a record keeps (no writer of Kamailio's INT
// column makes one) is dropped at start like any unusable row, instead of
// being held under a cut flag that no longer names its row.
func TestStoredFlagBeyond32BitsNotLoaded(t *testing.T) {
	if strconv.IntSize == 32 {
		t.Skip("an int of 32 bits: every flag fits")
	}
	clk := newFakeClock()
	st := newMemStore()
	wide := Key{PresURI: alice, Event: "presence", ID: "wide"}
	st.put(storedPub(clk, alice, "presence", wide.ID, "etag-wide", 1<<32|FlagRPCPublish, pidf("open")),
		storedPub(clk, alice, "presence", presKey.ID, "etag-ok", FlagRPCPublish, pidf("open")))
	e := newTestEngine(t, newFakeServer(t), clk, st, nil)
	if _, ok := e.Publication(presKey); !ok {
		t.Fatal("the row with a 32-bit flag was not loaded")
	}
	if pi, ok := e.Publication(wide); ok {
		t.Fatalf("the row with a flag beyond 32 bits was loaded with flag %d", pi.Flag)
	}
}

func TestRemoveNeverAcceptedSendsNothing(t *testing.T) {
	fs := newFakeServer(t)
	e := newTestEngine(t, fs, newFakeClock(), nil, nil)
	fs.Push(puatest.Reply{Code: 403})
	e.PublishWait(context.Background(), pubReq("a"))
	res, err := e.RemoveWait(context.Background(), presKey)
	if err != nil || res.Status != 0 {
		t.Fatalf("remove: %v %+v", err, res)
	}
	if n := len(fs.Requests()); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
	if _, err := e.RemoveWait(context.Background(), presKey); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second remove: %v", err)
	}
	if err := e.Remove(presKey); err != nil {
		t.Fatalf("Remove of unknown key: %v", err)
	}
}

func TestPublishWithoutETagFails(t *testing.T) {
	fs := newFakeServer(t)
	e := newTestEngine(t, fs, newFakeClock(), nil, nil)
	fs.Push(puatest.Reply{Code: 200, ETag: "-"})
	res, err := e.PublishWait(context.Background(), pubReq("a"))
	if err == nil || !strings.Contains(err.Error(), "SIP-ETag") {
		t.Fatalf("want an error naming SIP-ETag, got %v %+v", err, res)
	}
	if p, _ := e.Publication(presKey); p.State != StateFailed {
		t.Fatalf("state %q", p.State)
	}
}

func TestPublishLargeBodyOverTCP(t *testing.T) {
	fs := newFakeServer(t)
	e := newTestEngine(t, fs, newFakeClock(), nil, nil)
	body := bytes.Repeat([]byte("<dialog id=\"x\"><state>confirmed</state></dialog>\n"), 8192/48)
	res := mustWait(t, e, PublishRequest{Key: Key{PresURI: alice, Event: "dialog"}, Body: body})
	if res.Status != 200 {
		t.Fatalf("result %+v", res)
	}
	req := fs.Requests()[0]
	if req.Transport() != "TCP" || !bytes.Equal(req.Body(), body) {
		t.Fatalf("transport %s, body %d bytes", req.Transport(), len(req.Body()))
	}
	if ct := headerValue(req, "Content-Type"); ct != "application/dialog-info+xml" {
		t.Fatalf("Content-Type %q", ct)
	}
}

func TestRestartRefreshesStoredETag(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	e1 := newTestEngine(t, fs, clk, st, nil)
	req := pubReq("a")
	req.ExtraHeaders = []Header{{"Sender", "sip:phone@10.0.0.1"}}
	req.Expires = 10 * time.Minute
	mustWait(t, e1, req)
	if err := e1.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st.rows.Len() != 1 {
		t.Fatalf("%d stored rows", st.rows.Len())
	}
	for _, r := range st.rows.Rows() {
		if r.ETag != "etag1" || r.Flag != FlagUsrloc || r.EventName != "presence" ||
			r.Expires != clk.Now().Add(10*time.Minute).Unix() || r.ReqExpires != 600 || !bytes.Equal(r.Body, pidf("a")) ||
			!slices.Equal(r.ExtraHeaders, []Header{{"Sender", "sip:phone@10.0.0.1"}}) {
			t.Fatalf("stored %+v", r)
		}
	}
	// A second, expired row is dropped at load.
	st.rows.Put(identity{presURI: "sip:bob@example.com", presID: "x", event: "presence", flag: 1}, Record{
		PresURI: "sip:bob@example.com", PresID: "x", EventName: "presence", Flag: 1,
		ETag: "old", Expires: clk.Now().Add(-time.Second).Unix(), Body: pidf("bob")})

	e2 := newTestEngine(t, fs, clk, st, nil)
	waitFor(t, "refresh after restart", countIs(fs, 2))
	reqs := fs.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	// The requested Expires survives the restart.
	checkPublish(t, reqs[1], wire{ifMatch: "etag1", expires: "600"})
	if got := headerValue(reqs[1], "Sender"); got != "sip:phone@10.0.0.1" {
		t.Fatalf("Sender %q", got)
	}
	waitFor(t, "refresh accepted", func() bool { p, _ := e2.Publication(presKey); return p.ETag == "etag2" })
	// A change after restart is a modify with the stored state's ETag.
	mustWait(t, e2, pubReq("b"))
	checkPublish(t, fs.Requests()[2], wire{ifMatch: "etag2", body: string(pidf("b")), expires: "3600"})
	if err := e2.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st.rows.Len() != 1 {
		t.Fatalf("%d stored rows after the second stop (expired row kept?)", st.rows.Len())
	}
}

// TestWriteBehind: with sync_etags off, records reach the store only at
// the update_period tick.
func TestWriteBehind(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	e := newTestEngine(t, fs, clk, st, func(c *Config) { c.SyncETags = false })
	rows := st.rows.Len
	mustWait(t, e, pubReq("a"))
	time.Sleep(100 * time.Millisecond)
	if n := rows(); n != 0 {
		t.Fatalf("%d rows written before the update_period tick", n)
	}
	clk.Advance(e.cfg.UpdatePeriod)
	waitFor(t, "flush", func() bool { return rows() == 1 })
	if _, err := e.RemoveWait(context.Background(), presKey); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if n := rows(); n != 1 {
		t.Fatalf("%d rows before the update_period tick after removal", n)
	}
	clk.Advance(e.cfg.UpdatePeriod)
	waitFor(t, "flush of removal", func() bool { return rows() == 0 })
}

// TestSyncETags: with sync_etags on (the default), every ETag the server
// grants and every removal reach the store without waiting for the
// update_period tick (the fake clock never moves here).
func TestSyncETags(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	e := newTestEngine(t, fs, clk, st, nil)
	stored := func() string {
		for _, r := range st.rows.Rows() {
			return r.ETag
		}
		return "none"
	}
	res := mustWait(t, e, pubReq("a"))
	waitFor(t, "initial ETag stored", func() bool { return stored() == res.ETag })
	res = mustWait(t, e, pubReq("b"))
	waitFor(t, "modified ETag stored", func() bool { return stored() == res.ETag })
	if _, err := e.RemoveWait(context.Background(), presKey); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "removal stored", func() bool { return stored() == "none" })
}

func TestPublishDigestAuth(t *testing.T) {
	fs := newFakeServer(t)
	e := newTestEngine(t, fs, newFakeClock(), nil, func(c *Config) {
		c.AuthUsername, c.AuthPassword = "puaside", "secret"
	})
	fs.SetDefault(puatest.Reply{Code: 200, Challenge: true})
	res := mustWait(t, e, pubReq("a"))
	if res.Status != 200 {
		t.Fatalf("result %+v", res)
	}
	reqs := fs.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want challenge + authorised", len(reqs))
	}
	auth := headerValue(reqs[1], "Authorization")
	if !strings.Contains(auth, `username="puaside"`) || !strings.Contains(auth, `realm="example.com"`) {
		t.Fatalf("Authorization %q", auth)
	}
	if reqs[1].CSeq().SeqNo != reqs[0].CSeq().SeqNo+1 {
		t.Fatalf("CSeq %d after %d", reqs[1].CSeq().SeqNo, reqs[0].CSeq().SeqNo)
	}
}

func TestPublishIfMatchSameStateRefreshes(t *testing.T) {
	fs := newFakeServer(t)
	e := newTestEngine(t, fs, newFakeClock(), nil, nil)
	mustWait(t, e, pubReq("one"))
	again := pubReq("one")
	again.IfMatch = "etag1"
	res := mustWait(t, e, again)
	if res.Status != 200 || res.ETag != "etag2" {
		t.Fatalf("refresh result %+v", res)
	}
	reqs := fs.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	checkPublish(t, reqs[1], wire{ifMatch: "etag1", expires: "3600"})
	// Without IfMatch the same state sends nothing.
	mustWait(t, e, pubReq("one"))
	if n := len(fs.Requests()); n != 2 {
		t.Fatalf("%d requests after an unchanged publish, want 2", n)
	}
}

// Kamailio's presence module refuses a dialog;sla refresh or removal without
// a body (500), so for that event both carry the current document.
func TestSLARefreshAndRemoveCarryBody(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, nil)
	key := Key{PresURI: alice, Event: "dialog;sla", ID: "phone1"}
	doc := `<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="0" state="full" entity="sip:alice@example.com"/>`
	mustWait(t, e, PublishRequest{Key: key, Body: []byte(doc), Flag: FlagBLAPublish})
	clk.Advance(time.Hour)
	waitFor(t, "refresh", countIs(fs, 2))
	waitFor(t, "refresh accepted", func() bool { p, _ := e.Publication(key); return p.ETag == "etag2" })
	if res, err := e.RemoveWait(context.Background(), key); err != nil || res.Status != 200 {
		t.Fatalf("remove: %+v %v", res, err)
	}
	reqs := fs.Requests()
	for i, w := range []wire{{ifMatch: "etag1", body: doc, expires: "3600"}, {ifMatch: "etag2", body: doc, expires: "0"}} {
		r := reqs[i+1]
		if headerValue(r, "Event") != "dialog;sla" || headerValue(r, "SIP-If-Match") != w.ifMatch ||
			headerValue(r, "Expires") != w.expires || string(r.Body()) != w.body ||
			headerValue(r, "Content-Type") != "application/dialog-info+xml" {
			t.Fatalf("request %d on the wire:\n%s", i+1, r.String())
		}
	}
}

// TestSLARemovalSendsTheUnsentDocumentFirst: a dialog;sla removal carries
// the current document, but a server that keeps the row when its delete
// fails keeps the row's own document: the unsent one goes first there too.
func TestSLARemovalSendsTheUnsentDocumentFirst(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, nil)
	key := Key{PresURI: alice, Event: "dialog;sla", ID: "phone1"}
	busy := `<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="0" state="full" entity="sip:alice@example.com"><dialog id="d1"><state>confirmed</state></dialog></dialog-info>`
	idle := `<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="sip:alice@example.com"/>`
	reqs := removeDuringRetry(t, fs, clk, e, PublishRequest{Key: key, Body: []byte(busy), Flag: FlagBLAPublish},
		PublishRequest{Key: key, Body: []byte(idle), Flag: FlagBLAPublish}, 200)
	if len(reqs) != 4 {
		t.Fatalf("%d requests, want 4", len(reqs))
	}
	for i, w := range []wire{{ifMatch: "etag1", body: idle, expires: "30"}, {ifMatch: "etag2", body: idle, expires: "0"}} {
		if r := reqs[i+2]; headerValue(r, "SIP-If-Match") != w.ifMatch || headerValue(r, "Expires") != w.expires || string(r.Body()) != w.body {
			t.Fatalf("request %d on the wire:\n%s", i+2, r.String())
		}
	}
}

// TestRequestsFromListenPort: UDP requests leave from the listen socket
// (the port in our Contact), not from an ephemeral port.
func TestRequestsFromListenPort(t *testing.T) {
	fs := newFakeServer(t)
	e := newTestEngine(t, fs, newFakeClock(), nil, nil)
	mustWait(t, e, pubReq("a"))
	var u sip.Uri
	if err := sip.ParseUri(e.ContactURI(), &u); err != nil {
		t.Fatal(err)
	}
	req := fs.Requests()[0]
	if want := fmt.Sprintf("127.0.0.1:%d", u.Port); req.Source() != want {
		t.Fatalf("PUBLISH sent from %s, want the listen socket %s", req.Source(), want)
	}
}

// TestRequestsFromWildcardListen: a listener on 0.0.0.0 (advertised as
// 127.0.0.1) sends from its own port too.
func TestRequestsFromWildcardListen(t *testing.T) {
	fs := newFakeServer(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	e := newTestEngine(t, fs, newFakeClock(), nil, func(c *Config) {
		c.Listen = []string{fmt.Sprintf("udp:0.0.0.0:%d", free)}
		c.AdvertisedAddress = fmt.Sprintf("127.0.0.1:%d", free)
	})
	mustWait(t, e, pubReq("a"))
	e.sip.mu.RLock()
	port := e.sip.udpLaddr.Port
	e.sip.mu.RUnlock()
	req := fs.Requests()[0]
	if want := fmt.Sprintf("127.0.0.1:%d", free); port != free || req.Source() != want {
		t.Fatalf("PUBLISH sent from %s, want the listen socket's port %d", req.Source(), port)
	}
}

// TestPublishWaitReportsItsOwnAcceptance: waiting for a state the server
// has accepted already gives that acceptance, not the outcome of a later
// refresh of it that failed, whether the refresh is still in flight or
// waits for its retry.
func TestPublishWaitReportsItsOwnAcceptance(t *testing.T) {
	for _, tc := range []struct {
		name     string
		inFlight bool
	}{{"refresh in flight", true}, {"refresh backing off", false}} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFakeServer(t)
			clk := newFakeClock()
			e := newTestEngine(t, fs, clk, nil, nil)
			if res := mustWait(t, e, pubReq("a")); res.Status != 200 || res.ETag != "etag1" {
				t.Fatalf("initial result %+v", res)
			}
			fs.Push(puatest.Reply{Code: 503, Hold: tc.inFlight})
			p, _ := e.Publication(presKey)
			clk.Advance(p.NextRefresh.Sub(clk.Now())) // the refresh falls due, the lease still runs
			waitFor(t, "refresh sent", countIs(fs, 2))
			if !tc.inFlight {
				waitFor(t, "refresh failed", func() bool { p, _ := e.Publication(presKey); return p.State == StateRetrying })
			}
			ch, err := e.publish(pubReq("a"), true)
			if err != nil {
				t.Fatal(err)
			}
			fs.Release() // the held refresh fails
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res, err := wait(ctx, ch)
			if err != nil || res.Status != 200 || res.ETag != "etag1" || res.RetryAfter != 0 {
				t.Fatalf("wait for the accepted state: %v %+v, want its 200 with etag1", err, res)
			}
		})
	}
}

// TestPublishWaitAfterLapsedAcceptance: an acceptance whose lease ran out
// at the server while every refresh failed is not reported as the
// state's: the waiter gets the outcome of the next PUBLISH.
func TestPublishWaitAfterLapsedAcceptance(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, nil)
	if res := mustWait(t, e, pubReq("a")); res.Status != 200 || res.ETag != "etag1" {
		t.Fatalf("initial result %+v", res)
	}
	fs.Push(puatest.Reply{Code: 503})
	p, _ := e.Publication(presKey)
	clk.Advance(p.NextRefresh.Sub(clk.Now())) // the refresh falls due
	waitFor(t, "refresh failed", func() bool { p, _ := e.Publication(presKey); return p.State == StateRetrying })
	sent := len(fs.Requests())
	fs.Push(puatest.Reply{Code: 503, Hold: true})
	clk.Advance(p.Expires.Sub(clk.Now()) + time.Minute) // the lease runs out at the server, the retry goes
	waitFor(t, "retry sent", countIs(fs, sent+1))
	ch, err := e.publish(pubReq("a"), true)
	if err != nil {
		t.Fatal(err)
	}
	fs.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, err := wait(ctx, ch); err != nil || res.Status == 200 {
		t.Fatalf("wait after the lease ran out: %v %+v, want the retry's 503", err, res)
	}
}
