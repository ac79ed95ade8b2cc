package usrloc

import (
	"context"
	"testing"
	"time"

	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/internal/puatest/recorder"
	"github.com/puaside/puaside/pua"
)

// TestRestartKeepsHeldClosedDocument: the user unregistered and the
// engine stored the closed document within milliseconds, but puaside was
// killed before the tracker's next flush, so the contacts table still
// holds the binding. The engine's document is the newer one: the
// restarted tracker drops the binding and lets the closed document linger
// out, instead of publishing the user open again until the binding's
// expiry (an hour for a phone that is gone). A user the engine holds open
// keeps its binding.
func TestRestartKeepsHeldClosedDocument(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	r1 := newRig(t, DefaultConfig(), st, nil)
	r1.feed(t, "replicate_user0001", event.SourceReplicate) // 60 s
	r1.feed(t, "replicate_user0002", event.SourceReplicate) // 120 s
	if err := r1.t.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	const u1, u2 = "sip:user0001@harness.test", "sip:user0002@harness.test"
	lp := listerPub{Recorder: recorder.New(), pubs: []pua.PublicationInfo{
		{Key: pua.Key{PresURI: u1, Event: "presence", ID: "usrloc"}, Flag: pua.FlagUsrloc, Body: BuildPIDF(u1, nil)},
		{Key: pua.Key{PresURI: u2, Event: "presence", ID: "usrloc"}, Flag: pua.FlagUsrloc,
			Body: BuildPIDF(u2, []Binding{{URI: "sip:user0002@127.0.0.1:5112", Q: -1}})},
	}}
	r2 := newRig(t, DefaultConfig(), st, lp)
	r2.clock.Advance(5 * time.Second)
	if err := r2.t.Start(ctx); err != nil {
		t.Fatal(err)
	}
	expectOps(t, "restart", r2.pub.Take())
	expectContacts(t, "restart", r2, u1)
	expectContacts(t, "restart", r2, u2, "sip:user0002@127.0.0.1:5112 1m55s q=-")
	r2.clock.Advance(DefaultConfig().ClosedLinger + time.Second)
	r2.t.expireDue()
	expectOps(t, "closed linger", r2.pub.Take(), "remove "+u1)
	if err := r2.t.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.contacts.Get(u1); ok {
		t.Fatal("the binding the engine's closed document ended is still stored")
	}
}
