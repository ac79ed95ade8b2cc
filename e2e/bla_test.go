package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/bla"
	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/pua"
)

// blaLine is the shared line of the BLA tests.
const blaLine = "sip:line100@example.com"

// blaHolders returns the ids of the dialogs of a dialog-info body that hold
// line index idx (trying, proceeding, early or confirmed); ok is false when
// the body does not parse.
func blaHolders(body, idx string) (ids []string, ok bool) {
	doc, err := dialogdoc.Parse([]byte(body), 1<<20)
	if err != nil {
		return nil, false
	}
	for _, d := range doc.Dialogs {
		if d.LineID == idx && d.Holds() {
			ids = append(ids, d.ID)
		}
	}
	return ids, true
}

// blaDialogState returns the state of dialog id in a dialog-info body ("" if
// absent or unparsable).
func blaDialogState(body, id string) string {
	doc, err := dialogdoc.Parse([]byte(body), 1<<20)
	if err != nil {
		return ""
	}
	for _, d := range doc.Dialogs {
		// The line's document qualifies each id by its phone ("id~tag").
		if d.ID == id || strings.HasPrefix(d.ID, id+"~") {
			return d.State
		}
	}
	return ""
}

// blaKey is the line's composed publication (one for all its phones).
func blaKey(*polycom) pua.Key {
	return pua.Key{PresURI: blaLine, Event: polSLA, ID: bla.LinePublicationID}
}

// TestBLASharedLineKamailio runs Polycom bridged line appearance end to
// end: two emulated phones register one shared line at the Kamailio
// registrar (t_replicate to puaside), puaside subscribes to each phone's
// dialog;sla state and publishes the line's composed state on every NOTIFY
// (header_name Sender = the phone) to the Kamailio presence server, where each phone watches the
// line. A seize of a line index held by the other phone gets 409 and is not
// published; a phone is not sent the document of its own change (Sender);
// a phone's next call after a hang-up reaches the other; an unregistered
// phone loses its subscription and its calls leave the line's document.
func TestBLASharedLineKamailio(t *testing.T) {
	presence := presenceServer(t)
	cfg := baseConfig(t, presence)
	cfg.Features.Dialoginfo = false
	cfg.BLA.Lines = []bla.LineConfig{{AoR: blaLine}}
	cfg.BLA.ServerAddress = ""    // our own Contact only (see bla.Config)
	cfg.BLA.HeaderName = "Sender" // pua_bla's: a phone is not told of its own change
	reg := registrar(t, "WITH_REPLICATE", cfg)
	ps := startPuaside(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a := newPolycom(t, "line100", "example.com")
	b := newPolycom(t, "line100", "example.com")
	phones := []struct {
		name string
		p    *polycom
	}{{"A", a}, {"B", b}}

	// Each phone watches its line at the presence server (Contact user =
	// line user, as Kamailio matches dialog;sla watchers), then registers.
	for _, ph := range phones {
		if err := ph.p.watchLine(ctx, presence.Addr(), 600); err != nil {
			t.Fatalf("phone %s: %v", ph.name, err)
		}
		res, err := ph.p.register(ctx, reg.Addr(), 300)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("phone %s: register: %v %v", ph.name, res, err)
		}
	}

	// puaside subscribes to every registered contact of the line.
	for _, ph := range phones {
		if err := ph.p.waitUntil(ctx, "an initial NOTIFY answered", func() bool { return len(ph.p.codes) >= 1 }); err != nil {
			t.Fatal(err)
		}
		subs := ph.p.subscribes()
		if len(subs) != 1 {
			t.Fatalf("phone %s: %d SUBSCRIBEs, want 1: %+v", ph.name, len(subs), subs)
		}
		s := subs[0]
		if s.RURI != ph.p.contactString() || s.To != blaLine || s.From != blaLine || s.Event != polSLA || s.InDialog {
			t.Errorf("phone %s: SUBSCRIBE %+v: want R-URI %s, To/From %s, Event %s, out of dialog",
				ph.name, s, ph.p.contactString(), blaLine, polSLA)
		}
		if len(s.Contacts) != 1 || s.Contacts[0] != ps.d.Engine().ContactURI() {
			t.Errorf("phone %s: SUBSCRIBE Contact %q, want exactly [%s]", ph.name, s.Contacts, ps.d.Engine().ContactURI())
		}
		if s.Expires <= 0 || s.Expires > 300 {
			t.Errorf("phone %s: SUBSCRIBE Expires %d, want 1..300 (registration lifetime)", ph.name, s.Expires)
		}
		if c := ph.p.responses()[0]; c != 200 {
			t.Errorf("phone %s: initial NOTIFY answered %d, want 200", ph.name, c)
		}
		key := blaKey(ph.p)
		eventually(t, "phone "+ph.name+" initial state published", func() bool {
			p, ok := lookup(ps, key)
			return ok && p.State == pua.StateActive && p.LastStatus == 200
		})
	}

	send := func(ph *polycom, name, body string, want int) {
		t.Helper()
		code, err := ph.notify(ctx, "active;expires=300", body)
		if err != nil {
			t.Fatalf("phone %s: NOTIFY: %v", name, err)
		}
		if code != want {
			t.Fatalf("phone %s: NOTIFY answered %d, want %d", name, code, want)
		}
	}
	waitB := func(what string, match func(polNote) bool) polNote {
		t.Helper()
		n, err := b.waitNote(ctx, what, match)
		if err != nil {
			t.Fatalf("phone B: %v; NOTIFYs: %+v", err, b.notes())
		}
		return n
	}

	// A seizes line index 1, then the call is answered.
	send(a, "A", blaDoc(blaLine, 1, "partial", blaDialog{"a-call-1", "trying", "1"}), 200)
	waitB("A's seize", func(n polNote) bool { return blaDialogState(n.Body, "a-call-1") == "trying" })
	send(a, "A", blaDoc(blaLine, 2, "partial", blaDialog{"a-call-1", "confirmed", "1"}), 200)
	waitB("A's confirmed call", func(n polNote) bool { return blaDialogState(n.Body, "a-call-1") == "confirmed" })

	// B tries to seize the same index: refused, nothing published.
	bBefore := publication(t, ps, blaKey(b))
	send(b, "B", blaDoc(blaLine, 1, "partial", blaDialog{"b-refused", "trying", "1"}), 409)
	if got := publication(t, ps, blaKey(b)); strings.Contains(string(got.Body), "b-refused") || got.ETag != bBefore.ETag {
		t.Errorf("refused seize was published: %+v", got)
	}

	// A hangs up: B sees A's call end and index 1 free. (Kamailio's
	// dialog;sla NOTIFY carries the latest publication's document.)
	send(a, "A", blaDoc(blaLine, 3, "partial", blaDialog{"a-call-1", "terminated", "1"}), 200)
	waitB("line index 1 free", func(n polNote) bool {
		ids, ok := blaHolders(n.Body, "1")
		return ok && len(ids) == 0 && blaDialogState(n.Body, "a-call-1") == "terminated"
	})

	// Now B's seize is accepted and A sees it.
	send(b, "B", blaDoc(blaLine, 2, "partial", blaDialog{"b-call-1", "trying", "1"}), 200)
	if _, err := a.waitNote(ctx, "B's seize", func(n polNote) bool { return blaDialogState(n.Body, "b-call-1") == "trying" }); err != nil {
		t.Fatalf("phone A: %v; NOTIFYs: %+v", err, a.notes())
	}

	// A never got its own state back: every NOTIFY it got before B's
	// accepted seize (the first state change not from A) lacks its call.
	// Kamailio notifies in publication order, so an echo of A's seize,
	// call or hang-up would have come before B's seize.
	for _, n := range a.notes() {
		if blaDialogState(n.Body, "b-call-1") != "" {
			break
		}
		if strings.Contains(n.Body, "a-call-1") {
			t.Errorf("phone A got its own state echoed: %+v", n)
		}
	}
	// Nor did the refused seize reach the presence server: it would have
	// been notified to A before B's accepted seize.
	for _, n := range a.notes() {
		if strings.Contains(n.Body, "b-refused") {
			t.Errorf("phone A saw B's refused seize: %+v", n)
		}
	}
	if refused := slices.Index(b.responses(), 409); refused < 0 {
		t.Errorf("phone B codes %v: no 409", b.responses())
	}

	// A's next call: the presence server holds A's document with only a
	// terminated dialog, which Kamailio never updates; puaside replaces it,
	// so B sees the new seize.
	send(a, "A", blaDoc(blaLine, 4, "partial", blaDialog{"a-call-2", "trying", "2"}), 200)
	waitB("A's second call", func(n polNote) bool { return blaDialogState(n.Body, "a-call-2") == "trying" })
	if strings.Contains(presence.Logs(), "already terminated") {
		t.Errorf("the presence server skipped an update of A's document")
	}

	// A partial document names only what changed; the presence server,
	// which replaces a publication's document, must get A's whole state:
	// B sees the call on index 2 along with the new one on 3.
	send(a, "A", blaDoc(blaLine, 5, "partial", blaDialog{"a-call-3", "trying", "3"}), 200)
	n := waitB("A's third call", func(n polNote) bool { return blaDialogState(n.Body, "a-call-3") == "trying" })
	if got := blaDialogState(n.Body, "a-call-2"); got != "trying" {
		t.Errorf("after A's partial document B sees a-call-2 %q, want trying:\n%s", got, n.Body)
	}
	// A document not newer than the last one of the subscription is
	// answered but not published.
	send(a, "A", blaDoc(blaLine, 4, "partial", blaDialog{"a-call-old", "trying", "4"}), 200)
	if got := publication(t, ps, blaKey(a)); strings.Contains(string(got.Body), "a-call-old") {
		t.Errorf("an old document of A was published: %s", got.Body)
	}

	// A unregisters: puaside ends its subscription (Expires 0) and removes
	// its publication; B's stays.
	res, err := a.register(ctx, reg.Addr(), 0)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("phone A: unregister: %v %v", res, err)
	}
	if err := a.waitUntil(ctx, "SUBSCRIBE Expires 0", func() bool {
		for _, s := range a.subs {
			if s.InDialog && s.Expires == 0 {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatalf("%v; SUBSCRIBEs: %+v", err, a.subscribes())
	}
	for _, s := range a.subscribes() {
		if s.InDialog && s.Expires == 0 && (s.RURI != a.contactString() || s.To != blaLine || s.From != blaLine || s.Event != polSLA) {
			t.Errorf("unsubscribe %+v: want R-URI %s, To/From %s", s, a.contactString(), blaLine)
		}
	}
	eventually(t, "A's state gone from the line's document", func() bool {
		p, ok := lookup(ps, blaKey(b))
		return ok && !strings.Contains(string(p.Body), "a-call-")
	})
	eventually(t, "the line's one presentity row", func() bool {
		n, err := presence.Count(ctx, "presentity", "username = ? AND domain = ? AND event = ?", "line100", "example.com", polSLA)
		return err == nil && n == 1
	})
	if p, ok := lookup(ps, blaKey(b)); !ok || p.State != pua.StateActive {
		t.Errorf("B's publication after A left: %+v (present %v)", p, ok)
	}
	if len(b.subscribes()) != 1 {
		t.Errorf("phone B got SUBSCRIBEs after A left: %+v", b.subscribes())
	}
}
