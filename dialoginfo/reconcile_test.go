package dialoginfo

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/internal/puatest/recorder"
)

// confirmedCall builds a tracker holding one answered call alice → bob.
func confirmedCall(t *testing.T) (*Tracker, *recorder.Recorder, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	pub := recorder.New()
	tr, err := New(DefaultConfig(), Options{Publisher: pub, Clock: clk, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.ApplyDialogState(context.Background(), event.DialogState{CallID: "c1", FromTag: "ft", ToTag: "tt",
		From: "sip:alice@example.com", To: "sip:bob@example.com", State: "confirmed"}); err != nil {
		t.Fatal(err)
	}
	if len(pub.Live()) != 2 {
		t.Fatalf("live publications %d, want caller and callee", len(pub.Live()))
	}
	pub.Take()
	return tr, pub, clk
}

func TestEndCallTerminatesBothSides(t *testing.T) {
	tr, pub, clk := confirmedCall(t)
	asOf := clk.Advance(time.Minute)
	clk.Advance(time.Second)
	if !tr.EndCall("c1", "ft", asOf) {
		t.Fatal("EndCall refused an old confirmed call")
	}
	ops := pub.Take()
	if len(ops) != 2 {
		t.Fatalf("ops %+v, want two terminated documents", ops)
	}
	for _, op := range ops {
		body := string(op.Req.Body)
		if (op.Kind == recorder.Remove) || !strings.Contains(body, "<state>terminated</state>") || strings.Contains(body, `event=`) {
			t.Errorf("%s: %s", op.Key.PresURI, body)
		}
	}
	if tr.EndCall("c1", "ft", asOf) {
		t.Error("a second EndCall of an ended call reported a change")
	}
	clk.Advance(DefaultConfig().TerminatedLinger + time.Second)
	tr.Expire(clk.Now())
	if stuck(pub) != 0 || len(tr.Dialogs()) != 0 {
		t.Fatalf("after the linger: %d publications stuck, %d dialogs", stuck(pub), len(tr.Dialogs()))
	}
}

func TestEndCallKeepsNewerCalls(t *testing.T) {
	tr, pub, clk := confirmedCall(t)
	// The proxy was asked before the call was created (it was still in
	// the ingest queue): its absence from the answer means nothing.
	asOf := clk.Now().Add(-time.Second)
	if tr.EndCall("c1", "ft", asOf) {
		t.Fatal("EndCall ended a call created after the snapshot")
	}
	// A re-INVITE-like sign of life after the snapshot also protects it.
	clk.Advance(time.Minute)
	asOf = clk.Now()
	clk.Advance(time.Second)
	if err := tr.ApplyDialogState(context.Background(), event.DialogState{CallID: "c1", FromTag: "ft", ToTag: "tt", State: "confirmed", Hold: true}); err != nil {
		t.Fatal(err)
	}
	pub.Take()
	if tr.EndCall("c1", "ft", asOf) {
		t.Fatal("EndCall ended a call active after the snapshot")
	}
	if tr.EndCall("nope", "ft", clk.Now()) {
		t.Fatal("EndCall of an unknown call reported a change")
	}
	if len(pub.Take()) != 0 {
		t.Fatal("refused EndCalls published")
	}
}

// TestEndCallRightAfterRestart: a call loaded from the store at start was
// last heard of by the previous process, so the first answer of the proxy
// after the restart may end it at once (the BYE passed while down).
func TestEndCallRightAfterRestart(t *testing.T) {
	st := newMemStore()
	clk := newFakeClock()
	tr1, err := New(DefaultConfig(), Options{Publisher: recorder.New(), Store: st, Clock: clk, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	feed(t, tr1, "basic", "01.sip", "02.sip", "03.sip", "04.sip", "05.sip", "06.sip", "07.sip", "08.sip")
	if err := tr1.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	pub2 := recorder.New()
	tr2, err := New(DefaultConfig(), Options{Publisher: pub2, Store: st, Clock: clk, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ds := tr2.Dialogs()
	if len(ds) != 1 || ds[0].State != "confirmed" {
		t.Fatalf("after restart: %+v", ds)
	}
	// The proxy is asked within the grace of the call's last activity.
	if !tr2.EndCall(ds[0].CallID, ds[0].FromTag, clk.Now().Add(-5*time.Second)) {
		t.Fatal("a call loaded at start was protected as if it were new input")
	}
	if ops := pub2.Take(); len(ops) != 2 {
		t.Fatalf("ops %+v, want two terminated documents", ops)
	}
}
