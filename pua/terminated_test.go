package pua

import (
	"context"
	"testing"
	"time"
)

func dlgDoc(states ...string) []byte {
	b := `<?xml version="1.0"?><dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="sip:alice@example.com">`
	for _, s := range states {
		b += `<dialog id="d"><state>` + s + `</state></dialog>`
	}
	return []byte(b + `</dialog-info>`)
}

// TestTerminatedDialogReplaced: once the server holds a dialog document
// with only terminated dialogs, a change or a refresh is sent as a removal
// followed by a new initial PUBLISH (Kamailio never updates such a
// document); other events are modified as usual.
func TestTerminatedDialogReplaced(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, nil)
	key := Key{PresURI: alice, Event: "dialog", ID: "line"}
	pub := func(body []byte) {
		t.Helper()
		mustWait(t, e, PublishRequest{Key: key, Body: body, Expires: time.Minute, Flag: FlagRPCPublish})
	}
	pub(dlgDoc("confirmed"))
	pub(dlgDoc("terminated"))
	reqs := fs.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want initial and modify", len(reqs))
	}
	etag := headerValue(reqs[1], "SIP-If-Match")
	checkPublish(t, reqs[1], wire{ifMatch: etag, body: string(dlgDoc("terminated")), expires: "60", event: "dialog"})

	// A new call: removal of the terminated document, then an initial.
	pub(dlgDoc("early"))
	reqs = fs.Requests()
	if len(reqs) != 4 {
		t.Fatalf("%d requests, want removal and initial after the modify", len(reqs))
	}
	p, _ := e.Publication(key)
	checkPublish(t, reqs[2], wire{ifMatch: headerValue(reqs[2], "SIP-If-Match"), expires: "0", event: "dialog"})
	if headerValue(reqs[2], "SIP-If-Match") == "" {
		t.Fatal("removal without SIP-If-Match")
	}
	checkPublish(t, reqs[3], wire{body: string(dlgDoc("early")), expires: "60", event: "dialog"})
	if p.State != StateActive || p.ETag == "" {
		t.Fatalf("after the replacement: %+v", p)
	}

	// A further change is an ordinary modify.
	pub(dlgDoc("confirmed"))
	reqs = fs.Requests()
	if len(reqs) != 5 {
		t.Fatalf("%d requests", len(reqs))
	}
	checkPublish(t, reqs[4], wire{ifMatch: p.ETag, body: string(dlgDoc("confirmed")), expires: "60", event: "dialog"})

	// Back to terminated, then its refresh is a replacement too.
	pub(dlgDoc("terminated"))
	clk.Advance(time.Minute)
	waitFor(t, "replacement at refresh", countIs(fs, 8))
	reqs = fs.Requests()
	checkPublish(t, reqs[6], wire{ifMatch: headerValue(reqs[6], "SIP-If-Match"), expires: "0", event: "dialog"})
	checkPublish(t, reqs[7], wire{body: string(dlgDoc("terminated")), expires: "60", event: "dialog"})

	// A presence document is never replaced.
	mustWait(t, e, pubReq("a"))
	mustWait(t, e, PublishRequest{Key: presKey, Body: []byte(`<presence><state>terminated</state></presence>`), Flag: FlagUsrloc})
	mustWait(t, e, pubReq("b"))
	reqs = fs.Requests()
	if got := headerValue(reqs[len(reqs)-1], "SIP-If-Match"); got == "" || len(reqs) != 11 {
		t.Fatalf("presence change after a 'terminated' body: %d requests, last If-Match %q", len(reqs), got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}
