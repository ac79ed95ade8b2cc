package puaxmpp

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/puaside/puaside/pua"
)

func dialogBody(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "dialog", name+".xml"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGatewayOnThePhone: an XMPP user's subscription to a SIP user comes
// with a dialog subscription; a confirmed dialog shows the SIP user away
// "On the phone", its end the presence again; an early one changes
// nothing; the dialog subscription ends with the presence one.
func TestGatewayOnThePhone(t *testing.T) {
	tg := newTestGateway(t)
	ctx := context.Background()
	tg.stanza(t, `<presence type='subscribe' from='bob@xmpp.localhost' to='alice@sip.xmpp.localhost'/>`)
	pk := pua.SubKey{PresURI: "sip:alice@example.com", WatcherURI: "sip:bob@xmpp.localhost", Event: "presence", ID: PresID}
	dk := pk
	dk.Event = "dialog"
	if len(tg.eng.subs) < 2 || tg.eng.subs[1].SubKey != dk || tg.eng.subs[1].Flag != pua.FlagXMPPSubscribe {
		t.Fatalf("no dialog subscription: %+v", tg.eng.subs)
	}
	// A call before the presence is known sends nothing.
	tg.HandleNotify(ctx, pua.Notify{Key: dk, State: "active", Body: dialogBody(t, "confirmed")})
	if len(tg.sentOf("")) != 0 {
		t.Fatalf("sent before the presence was known: %+v", tg.sent)
	}
	body := []byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com"><tuple id="a"><status><basic>open</basic></status><note>at my desk</note></tuple></presence>`)
	tg.eng.known[pk] = pua.SubscriptionInfo{Key: pk, State: pua.StateActive, LastNotify: time.Now(), LastNotifyDoc: body}
	tg.HandleNotify(ctx, pua.Notify{Key: pk, State: "active", Body: body})
	last := func() outPresence {
		t.Helper()
		a := tg.sentOf("")
		if len(a) == 0 {
			t.Fatal("no available presence sent")
		}
		return a[len(a)-1]
	}
	if p := last(); p.Show != ShowAway || p.Status != StatusOnThePhone {
		t.Fatalf("in a call: %+v", p)
	}
	tg.HandleNotify(ctx, pua.Notify{Key: dk, State: "active", Body: dialogBody(t, "terminated")})
	if p := last(); p.Show != "" || p.Status != "at my desk" {
		t.Fatalf("after the call: %+v", p)
	}
	n := len(tg.sentOf(""))
	tg.HandleNotify(ctx, pua.Notify{Key: dk, State: "active", Body: dialogBody(t, "early")})
	if len(tg.sentOf("")) != n {
		t.Fatalf("an early dialog changed the presence: %+v", last())
	}
	// A partial document adds a dialog; a probe is answered with the call.
	tg.HandleNotify(ctx, pua.Notify{Key: dk, State: "active", Body: dialogBody(t, "partial")})
	if p := last(); p.Show != ShowAway || len(tg.sentOf("")) != n+1 {
		t.Fatalf("partial confirmed: %+v", p)
	}
	tg.stanza(t, `<presence type='probe' from='bob@xmpp.localhost' to='alice@sip.xmpp.localhost'/>`)
	if p := last(); p.Show != ShowAway || p.Status != StatusOnThePhone || len(tg.sentOf("")) != n+2 {
		t.Fatalf("probe during a call: %+v", p)
	}
	// A bad body is refused, the state kept.
	if code, _ := tg.HandleNotify(ctx, pua.Notify{Key: dk, State: "active", Body: []byte("<dialog-info")}); code != 200 || len(tg.sentOf("")) != n+2 {
		t.Fatalf("bad body: %d, %+v", code, tg.sent)
	}
	tg.stanza(t, `<presence type='probe' from='bob@xmpp.localhost' to='alice@sip.xmpp.localhost'/>`)
	if p := last(); p.Show != ShowAway {
		t.Fatalf("call state lost to a bad body: %+v", p)
	}
	// The notifier ending it (not for good) subscribes again.
	subs := len(tg.eng.subs)
	tg.HandleNotify(ctx, pua.Notify{Key: dk, State: "terminated", Reason: "timeout"})
	if len(tg.eng.subs) != subs+1 || tg.eng.subs[subs].SubKey != dk {
		t.Fatalf("dialog subscription not renewed: %+v", tg.eng.subs[subs:])
	}
	if p := last(); p.Show != "" {
		t.Fatalf("call state kept after the subscription ended: %+v", p)
	}
	tg.stanza(t, `<presence type='unsubscribe' from='bob@xmpp.localhost' to='alice@sip.xmpp.localhost'/>`)
	if len(tg.eng.unsubs) != 2 || tg.eng.unsubs[0] != pk || tg.eng.unsubs[1] != dk {
		t.Fatalf("unsubscribe: %+v", tg.eng.unsubs)
	}
	// A NOTIFY after the unsubscription changes nothing.
	n = len(tg.sent)
	tg.HandleNotify(ctx, pua.Notify{Key: dk, State: "active", Body: dialogBody(t, "confirmed")})
	if len(tg.sent) != n {
		t.Fatalf("sent after the unsubscription: %+v", tg.sent[n:])
	}
}

// TestGatewayDialogsBounded: a document with more dialogs than
// MaxCallDialogs keeps MaxCallDialogs.
func TestGatewayDialogsBounded(t *testing.T) {
	tg := newTestGateway(t)
	pk := pua.SubKey{PresURI: "sip:alice@example.com", WatcherURI: "sip:bob@xmpp.localhost", Event: "presence", ID: PresID}
	tg.ensureDialog(pk)
	b := []byte(`<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="sip:alice@example.com">`)
	for i := 0; i < 3*MaxCallDialogs; i++ {
		b = append(b, []byte(`<dialog id="d`+string(rune('a'+i%26))+string(rune('a'+i/26))+`"><state>early</state></dialog>`)...)
	}
	b = append(b, []byte(`</dialog-info>`)...)
	tg.HandleNotify(context.Background(), pua.Notify{Key: dialogKey(pk), State: "active", Body: b})
	tg.Gateway.mu.Lock()
	n := len(tg.dialogs[dialogKey(pk)])
	tg.Gateway.mu.Unlock()
	if n != MaxCallDialogs {
		t.Fatalf("%d dialogs held, want %d", n, MaxCallDialogs)
	}
}

// FuzzDialogNotify: any dialog NOTIFY body is taken without a crash and
// leaves at most MaxCallDialogs dialogs.
func FuzzDialogNotify(f *testing.F) {
	for _, n := range []string{"confirmed", "early", "terminated", "partial"} {
		f.Add(dialogBody(f, n))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		tg := newTestGateway(t)
		pk := pua.SubKey{PresURI: "sip:alice@example.com", WatcherURI: "sip:bob@xmpp.localhost", Event: "presence", ID: PresID}
		tg.ensureDialog(pk)
		tg.HandleNotify(context.Background(), pua.Notify{Key: dialogKey(pk), State: "active", Body: body})
		tg.Gateway.mu.Lock()
		defer tg.Gateway.mu.Unlock()
		if n := len(tg.dialogs[dialogKey(pk)]); n > MaxCallDialogs {
			t.Fatalf("%d dialogs held", n)
		}
	})
}
