package dialoginfo

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/internal/puatest/recorder"
)

// TestCatchUpTakesTheStoreExceptNewerInput: instance a and a joining
// instance b share one store. b loads alice's call at Start; a then
// receives what b misses before its inputs are bound (alice hangs up,
// carol calls dave) and flushes. b's CatchUp terminates alice's call and
// takes carol's, publishing both into b's engine, and keeps the call it
// received itself after asOf (erin's, not yet in the store).
func TestCatchUpTakesTheStoreExceptNewerInput(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	clk := newFakeClock()
	newTracker := func(pub *recorder.Recorder) *Tracker {
		tr, err := New(DefaultConfig(), Options{Publisher: pub, Store: st, Clock: clk, Logger: quietLog()})
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	dialog := func(tr *Tracker, id, from, to, state string) {
		t.Helper()
		if err := tr.ApplyDialogState(ctx, event.DialogState{CallID: id, FromTag: "ft", ToTag: "tt",
			From: from, To: to, State: state}); err != nil {
			t.Fatal(err)
		}
	}
	flush := func(tr *Tracker) {
		t.Helper()
		if err := tr.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	a := newTracker(recorder.New())
	dialog(a, "c1", "sip:alice@example.com", "sip:bob@example.com", "confirmed")
	flush(a)

	pub := recorder.New()
	b := newTracker(pub)
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	dialog(a, "c1", "sip:alice@example.com", "sip:bob@example.com", "terminated")
	dialog(a, "c2", "sip:carol@example.com", "sip:dave@example.com", "confirmed")
	flush(a)
	bound := clk.Now()
	clk.Advance(time.Second)
	dialog(b, "c3", "sip:erin@example.com", "sip:frank@example.com", "confirmed")
	pub.Take()

	n, err := b.CatchUp(ctx, bound)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("CatchUp changed %d calls, want 2 (c1, c2)", n)
	}
	var got []string
	for _, op := range pub.Take() {
		state := "?"
		for _, s := range []string{"confirmed", "terminated"} {
			if strings.Contains(string(op.Req.Body), "<state>"+s+"</state>") {
				state = s
			}
		}
		got = append(got, op.Key.PresURI+" "+state)
	}
	slices.Sort(got)
	want := []string{"sip:alice@example.com terminated", "sip:bob@example.com terminated",
		"sip:carol@example.com confirmed", "sip:dave@example.com confirmed"}
	if !slices.Equal(got, want) {
		t.Errorf("published %v, want %v", got, want)
	}
	var live []string
	for _, d := range b.Dialogs() {
		live = append(live, d.CallID)
	}
	slices.Sort(live)
	if want := []string{"c1", "c2", "c3"}; !slices.Equal(slices.Compact(live), want) {
		t.Errorf("dialogs held %v, want %v (c1 lingering terminated)", live, want)
	}
	if n, err := b.CatchUp(ctx, bound); err != nil || n != 0 {
		t.Errorf("a second CatchUp changed %d calls (%v), want none", n, err)
	}
}
