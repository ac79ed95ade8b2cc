package kamailiotest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/internal/sipphone"
)

const domain = "example.com"

const pidfOpen = `<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com">
<tuple id="t1"><status><basic>open</basic></status><contact>sip:alice@127.0.0.1</contact></tuple>
</presence>
`

const dialogConfirmed = `<?xml version="1.0" encoding="UTF-8"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="sip:bob@example.com">
<dialog id="d1" call-id="c1@127.0.0.1" local-tag="lt1" remote-tag="rt1" direction="initiator">
<state>confirmed</state>
<local><identity>sip:bob@example.com</identity></local>
<remote><identity>sip:carol@example.com</identity></remote>
</dialog>
</dialog-info>
`

// slaSeized is a phone's dialog;sla state for the shared line "line1".
const slaSeized = `<?xml version="1.0" encoding="UTF-8"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="0" state="full" entity="sip:line1@example.com">
<dialog id="%ID%" call-id="%ID%@127.0.0.1" local-tag="lt" remote-tag="rt" direction="initiator">
<state>confirmed</state>
<local><identity>sip:line1@example.com</identity><target uri="sip:line1@example.com"><param pname="x-line-id" pval="0"/></target></local>
<remote><identity>sip:dave@example.com</identity></remote>
</dialog>
</dialog-info>
`

func uri(user string) sip.Uri { return sip.Uri{Scheme: "sip", User: user, Host: domain} }

type pub struct {
	event, ctype, body, etag string
	expires                  int
	headers                  []sip.Header
}

// publish sends one PUBLISH for aor to the presence server from ph and
// returns the final response.
func publish(ctx context.Context, t *testing.T, ph *sipphone.Phone, server string, aor sip.Uri, p pub) *sip.Response {
	t.Helper()
	req := sip.NewRequest(sip.PUBLISH, aor)
	from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(10))
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: aor, Params: sip.NewParams()})
	cid := sip.CallIDHeader(sip.GenerateTagN(16) + "@127.0.0.1")
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.PUBLISH})
	req.AppendHeader(sip.NewHeader("Event", p.event))
	exp := sip.ExpiresHeader(p.expires)
	req.AppendHeader(&exp)
	if p.etag != "" {
		req.AppendHeader(sip.NewHeader("SIP-If-Match", p.etag))
	}
	for _, h := range p.headers {
		req.AppendHeader(h)
	}
	if p.body != "" {
		ct := sip.ContentTypeHeader(p.ctype)
		req.AppendHeader(&ct)
		req.SetBody([]byte(p.body))
	}
	res, err := ph.Request(ctx, server, req)
	if err != nil {
		t.Fatalf("PUBLISH %s %s: %v", p.event, aor.String(), err)
	}
	if res.StatusCode != 200 {
		t.Fatalf("PUBLISH %s %s: %d %s", p.event, aor.String(), res.StatusCode, res.Reason)
	}
	return res
}

func etagOf(t *testing.T, res *sip.Response) string {
	t.Helper()
	h := res.GetHeader("SIP-ETag")
	if h == nil || h.Value() == "" {
		t.Fatalf("200 to PUBLISH without SIP-ETag:\n%s", res.String())
	}
	return h.Value()
}

// waitCount polls a row count until it equals want (bounded by ctx).
func waitCount(ctx context.Context, t *testing.T, in *Instance, want int, table, where string, args ...any) {
	t.Helper()
	var n int
	var err error
	for ctx.Err() == nil {
		n, err = in.Count(ctx, table, where, args...)
		if err == nil && n == want {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("%s rows where %s %v: got %d (err %v), want %d", table, where, args, n, err, want)
}

func eachBackend(t *testing.T, fn func(t *testing.T, in *Instance)) {
	for _, backend := range []string{SQLite, MySQL} {
		t.Run(backend, func(t *testing.T) {
			in := Start(t, Options{Config: ConfigPath(t, "presence.cfg"), DB: backend})
			fn(t, in)
		})
	}
}

func logNotes(t *testing.T, w *sipphone.Watcher) {
	t.Helper()
	for i, n := range w.Notifications() {
		t.Logf("NOTIFY %d: Event=%q State=%q Content-Type=%q body=%q", i, n.Event, n.State, n.ContentType, n.Body)
	}
}

func TestPresencePublishOpenThenRemove(t *testing.T) {
	eachBackend(t, func(t *testing.T, in *Instance) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		alice := uri("alice")
		watcher := sipphone.NewPhone(t, "watcher", domain)
		publisher := sipphone.NewPhone(t, "puaside", domain)

		w, err := watcher.Watch(ctx, in.Addr(), alice, "presence", sipphone.WatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer logNotes(t, w)
		// Kamailio 5.6.3 answers the first SUBSCRIBE with a NOTIFY at once
		// (no presentity yet: empty body, Subscription-State active).
		first, err := w.WaitNotify(ctx, func(sipphone.Notification) bool { return true })
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(first.State, "active") {
			t.Fatalf("first NOTIFY state %q, want active", first.State)
		}

		res := publish(ctx, t, publisher, in.Addr(), alice, pub{event: "presence", ctype: "application/pidf+xml", body: pidfOpen, expires: 600})
		etag := etagOf(t, res)
		if _, err := w.WaitFor(ctx, func(b string) bool { return strings.Contains(b, "<basic>open</basic>") }); err != nil {
			t.Fatal(err)
		}
		waitCount(ctx, t, in, 1, "presentity", "username = ? AND domain = ? AND event = ?", "alice", domain, "presence")

		publish(ctx, t, publisher, in.Addr(), alice, pub{event: "presence", etag: etag, expires: 0})
		// Kamailio 5.6.3 (publ_cache=1) answers the removal with a NOTIFY,
		// Subscription-State still active, whose body presence_xml builds:
		// the same tuple id with <basic>closed</basic> (no <contact>).
		// (With publ_cache=2 the body would be empty.)
		gone, err := w.WaitNotify(ctx, func(sipphone.Notification) bool { return true })
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(gone.Body, "<basic>closed</basic>") || !strings.Contains(gone.Body, `id="t1"`) ||
			gone.ContentType != "application/pidf+xml" || !strings.HasPrefix(gone.State, "active") {
			t.Fatalf("NOTIFY after removal: state %q type %q body %q", gone.State, gone.ContentType, gone.Body)
		}
		waitCount(ctx, t, in, 0, "presentity", "username = ? AND domain = ?", "alice", domain)
	})
}

func TestPresenceDialogInfo(t *testing.T) {
	eachBackend(t, func(t *testing.T, in *Instance) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		bob := uri("bob")
		watcher := sipphone.NewPhone(t, "watcher", domain)
		publisher := sipphone.NewPhone(t, "puaside", domain)
		w, err := watcher.Watch(ctx, in.Addr(), bob, "dialog", sipphone.WatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer logNotes(t, w)
		publish(ctx, t, publisher, in.Addr(), bob, pub{event: "dialog", ctype: "application/dialog-info+xml", body: dialogConfirmed, expires: 600})
		n, err := w.WaitFor(ctx, func(b string) bool { return strings.Contains(b, "<state>confirmed</state>") })
		if err != nil {
			t.Fatal(err)
		}
		if n.ContentType != "application/dialog-info+xml" {
			t.Errorf("Content-Type %q", n.ContentType)
		}
		waitCount(ctx, t, in, 1, "presentity", "username = ? AND event = ?", "bob", "dialog")
	})
}

func TestPresenceBLASender(t *testing.T) {
	eachBackend(t, func(t *testing.T, in *Instance) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		line := uri("line1")
		publisher := sipphone.NewPhone(t, "puaside", domain)
		// Two phones sharing line1: a dialog;sla watcher is matched on its
		// Contact user, so both subscribe with Contact sip:line1@their-socket.
		phoneA := sipphone.NewPhone(t, "phoneA", domain)
		phoneB := sipphone.NewPhone(t, "phoneB", domain)
		wa, err := phoneA.Watch(ctx, in.Addr(), line, "dialog;sla", sipphone.WatchOptions{ContactUser: "line1"})
		if err != nil {
			t.Fatal(err)
		}
		defer logNotes(t, wa)
		wb, err := phoneB.Watch(ctx, in.Addr(), line, "dialog;sla", sipphone.WatchOptions{ContactUser: "line1"})
		if err != nil {
			t.Fatal(err)
		}
		defer logNotes(t, wb)

		ca := phoneA.ContactURI("line1")
		senderA := ca.String()
		bodyA := strings.ReplaceAll(slaSeized, "%ID%", "fromA")
		publish(ctx, t, publisher, in.Addr(), line, pub{event: "dialog;sla", ctype: "application/dialog-info+xml", body: bodyA, expires: 600,
			headers: []sip.Header{sip.NewHeader("Sender", senderA)}})
		if _, err := wb.WaitFor(ctx, func(b string) bool { return strings.Contains(b, "fromA") }); err != nil {
			t.Fatal(err)
		}
		waitCount(ctx, t, in, 1, "presentity", "username = ? AND event = ? AND sender = ?", "line1", "dialog;sla", senderA)

		// A second state reported by phone B reaches phone A; phone A must
		// not have been notified of its own state before that.
		cb := phoneB.ContactURI("line1")
		senderB := cb.String()
		bodyB := strings.ReplaceAll(slaSeized, "%ID%", "fromB")
		publish(ctx, t, publisher, in.Addr(), line, pub{event: "dialog;sla", ctype: "application/dialog-info+xml", body: bodyB, expires: 600,
			headers: []sip.Header{sip.NewHeader("Sender", senderB)}})
		if _, err := wa.WaitFor(ctx, func(b string) bool { return strings.Contains(b, "fromB") }); err != nil {
			t.Fatal(err)
		}
		// Kamailio 5.6.3 does not aggregate the two publications (different
		// Sender, no ETag: two presentity rows): each NOTIFY carries the
		// body of the one publication that changed, unchanged.
		for i, n := range wa.Notifications() {
			if strings.Contains(n.Body, "fromA") {
				t.Errorf("phone A was notified of its own state (NOTIFY %d)", i)
			}
		}
		for i, n := range wb.Notifications() {
			if strings.Contains(n.Body, "fromB") {
				t.Errorf("phone B was notified of its own state (NOTIFY %d)", i)
			}
		}
	})
}
