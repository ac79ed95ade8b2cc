package pua

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// storedPub is a stored publication row as an engine would have left it.
func storedPub(clk *fakeClock, uri, event, id, etag string, flag int, body []byte) Record {
	return Record{PresURI: uri, PresID: id, EventName: event, Flag: flag, ETag: etag,
		Expires: clk.Now().Add(time.Hour).Unix(), Body: body, ReqExpires: 3600}
}

// put stores rows in m.
func (m *memStore) put(rs ...Record) {
	for _, r := range rs {
		m.rows.Put(idOf(r), r)
	}
}

// row returns the stored row of a publication key.
func (m *memStore) row(k Key, flag int) (Record, bool) {
	return m.rows.Get(identity{presURI: k.PresURI, presID: k.ID, event: k.Event, flag: flag})
}

// requestsTo returns the requests whose Request-URI is uri.
func requestsTo(fs *fakeServer, uri string) []*sip.Request {
	var out []*sip.Request
	for _, r := range fs.Requests() {
		if r.Recipient.String() == uri {
			out = append(out, r)
		}
	}
	return out
}

func TestSweepRemovesUnclaimed(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	const (
		kept    = "sip:kept@example.com"
		gone    = "sip:gone@example.com"
		pending = "sip:pending@example.com"
		changed = "sip:changed@example.com"
		api     = "sip:api@example.com"
	)
	st.put(
		storedPub(clk, kept, "presence", "usrloc", "e-kept", FlagUsrloc, pidf("kept")),
		storedPub(clk, gone, "presence", "usrloc", "e-gone", FlagUsrloc, pidf("gone")),
		storedPub(clk, pending, "presence", "usrloc", "", FlagUsrloc, pidf("pending")),
		storedPub(clk, changed, "dialog", "d1", "e-changed", FlagDialogPublish, []byte("<dialog-info/>")),
		storedPub(clk, api, "presence", "api", "e-api", FlagRPCPublish, pidf("api")),
	)
	e := newTestEngineOwners(t, fs, clk, st, nil, []int{FlagUsrloc, FlagDialogPublish})
	if !e.ClaimsOpen() {
		t.Fatal("claim window not open after Start")
	}
	if !e.Claim(Key{PresURI: kept, Event: "presence", ID: "usrloc"}) {
		t.Fatal("Claim of a loaded publication reported false")
	}
	if e.Claim(Key{PresURI: "sip:nobody@example.com", Event: "presence", ID: "usrloc"}) {
		t.Fatal("Claim of an unknown publication reported true")
	}
	if err := e.Publish(PublishRequest{Key: Key{PresURI: changed, Event: "dialog", ID: "d1"},
		Body: []byte("<dialog-info version=\"2\"/>"), Flag: FlagDialogPublish}); err != nil {
		t.Fatal(err)
	}
	e.ClaimsDone(FlagUsrloc)
	if !e.ClaimsOpen() {
		t.Fatal("swept before every owner was done")
	}
	e.ClaimsDone(FlagDialogPublish)
	if e.ClaimsOpen() {
		t.Fatal("claim window still open after every owner was done")
	}
	waitFor(t, "unclaimed publication removed", func() bool {
		_, ok := e.Publication(Key{PresURI: gone, Event: "presence", ID: "usrloc"})
		return !ok
	})
	var removal bool
	for _, r := range requestsTo(fs, gone) {
		if headerValue(r, "Expires") == "0" {
			removal = true
		}
	}
	if !removal {
		t.Fatal("no PUBLISH Expires: 0 for the unclaimed publication")
	}
	if got := requestsTo(fs, pending); len(got) != 0 {
		t.Fatalf("%d requests for an unclaimed publication the server never accepted", len(got))
	}
	for _, k := range []Key{{kept, "presence", "usrloc"}, {changed, "dialog", "d1"}, {api, "presence", "api"}} {
		if _, ok := e.Publication(k); !ok {
			t.Errorf("%v removed", k)
		}
	}
	if _, ok := e.Publication(Key{PresURI: pending, Event: "presence", ID: "usrloc"}); ok {
		t.Error("unclaimed pending publication kept")
	}
	waitFor(t, "rows of the swept records deleted", func() bool {
		_, g := st.row(Key{gone, "presence", "usrloc"}, FlagUsrloc)
		_, p := st.row(Key{pending, "presence", "usrloc"}, FlagUsrloc)
		return !g && !p
	})
}

// TestClaimHoldsPendingUntilClaimed: a loaded publication the server never
// accepted is published once its owner claims it, not before.
func TestClaimHoldsPendingUntilClaimed(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	st.put(storedPub(clk, alice, "presence", "usrloc", "", FlagUsrloc, pidf("a")))
	e := newTestEngineOwners(t, fs, clk, st, nil, []int{FlagUsrloc})
	time.Sleep(50 * time.Millisecond)
	if n := len(fs.Requests()); n != 0 {
		t.Fatalf("%d requests before the claim", n)
	}
	e.Claim(presKey)
	waitFor(t, "initial PUBLISH after the claim", countIs(fs, 1))
	e.ClaimsDone(FlagUsrloc)
	waitFor(t, "accepted", func() bool { p, _ := e.Publication(presKey); return p.ETag == "etag1" })
}

func TestClaimTimeoutSweeps(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	st.put(storedPub(clk, alice, "presence", "usrloc", "e1", FlagUsrloc, pidf("a")))
	sub := Record{PresURI: "sip:line@example.com", WatcherURI: "sip:line@example.com", PresID: "bla-1",
		EventName: "dialog;sla", Flag: FlagBLASubscribe, CallID: "c1", FromTag: "f1", ToTag: "t1",
		CSeq: 3, RemoteContact: "sip:phone@" + fs.URI()[len("sip:"):], Expires: clk.Now().Add(time.Hour).Unix()}
	st.put(sub)
	e := newTestEngineOwners(t, fs, clk, st, func(c *Config) { c.ClaimTimeout = 10 * time.Second },
		[]int{FlagUsrloc, FlagBLASubscribe})
	e.ClaimsDone(FlagUsrloc) // the bla owner never finishes
	waitFor(t, "refreshes of the loaded records", countIs(fs, 2))
	if !e.ClaimsOpen() {
		t.Fatal("swept before the timeout")
	}
	clk.Advance(10 * time.Second)
	waitFor(t, "both removed", func() bool { return len(e.Publications()) == 0 && len(e.Subscriptions()) == 0 })
	var unpub, unsub bool
	for _, r := range fs.Requests() {
		if headerValue(r, "Expires") != "0" {
			continue
		}
		switch r.Method {
		case sip.PUBLISH:
			unpub = true
		case sip.SUBSCRIBE:
			unsub = true
		}
	}
	if !unpub || !unsub {
		t.Fatalf("removal sent: PUBLISH %v, SUBSCRIBE %v", unpub, unsub)
	}
}

// TestNoOwnersNoSweep: an engine without owners keeps every loaded record.
func TestNoOwnersNoSweep(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	st.put(storedPub(clk, alice, "presence", "usrloc", "", FlagUsrloc, pidf("a")))
	e := newTestEngine(t, fs, clk, st, nil)
	waitFor(t, "loaded pending record published", countIs(fs, 1))
	clk.Advance(time.Hour)
	if _, ok := e.Publication(presKey); !ok {
		t.Fatal("record swept without owners")
	}
}

// TestSweepEndsDialogsFirst: an unclaimed dialog publication is first
// modified to its terminated document (Kamailio keeps notifying the last
// document of a removed one), then removed.
func TestSweepEndsDialogsFirst(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	doc := `<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="3" state="full" entity="sip:bob@example.com">` +
		`<dialog id="d1" direction="recipient"><state>confirmed</state></dialog></dialog-info>`
	st.put(storedPub(clk, "sip:bob@example.com", "dialog", "d1", "e1", FlagDialogPublish, []byte(doc)))
	e := newTestEngineOwners(t, fs, clk, st, nil, []int{FlagDialogPublish})
	waitFor(t, "refresh of the loaded publication", countIs(fs, 1))
	e.ClaimsDone(FlagDialogPublish)
	waitFor(t, "terminated document", countIs(fs, 2))
	mod := fs.Requests()[1]
	if !strings.Contains(string(mod.Body()), "<state>terminated</state>") || strings.Contains(string(mod.Body()), "confirmed") ||
		headerValue(mod, "Expires") == "0" {
		t.Fatalf("sweep sent %s Expires %s:\n%s", mod.Method, headerValue(mod, "Expires"), mod.Body())
	}
	waitFor(t, "removal", countIs(fs, 3))
	if got := headerValue(fs.Requests()[2], "Expires"); got != "0" {
		t.Fatalf("third request Expires %s, want the removal", got)
	}
	waitFor(t, "record gone", func() bool { return len(e.Publications()) == 0 })
}
