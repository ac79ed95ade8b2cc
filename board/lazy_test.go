package board

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/clock/clocktest"
	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/pua"
)

// stats is what the board has rendered: documents encoded and the hub's
// version.
func stats(b *Board) (renders, ver uint64) {
	b.mu.Lock()
	renders = b.renders
	b.mu.Unlock()
	b.hub.mu.Lock()
	ver = b.hub.ver
	b.hub.mu.Unlock()
	return renders, ver
}

// fakeLines is a line source of one line, gone once gone is set.
type fakeLines struct {
	ln   Line
	gone *bool
}

func (f fakeLines) Line(a string) (Line, bool) {
	return f.ln, a == f.ln.AoR && (f.gone == nil || !*f.gone)
}

func (f fakeLines) LineAoRs() []string {
	if f.gone != nil && *f.gone {
		return nil
	}
	return []string{f.ln.AoR}
}

// waitNoClients waits until no event stream is open.
func waitNoClients(t *testing.T, b *Board) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for b.hub.clients() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the event stream never closed")
		}
		time.Sleep(time.Millisecond)
	}
}

// change makes a change of every kind to AoR i.
func changeAll(b *Board, i int) {
	a := fmt.Sprintf("sip:u%d@example.com", i)
	b.Contacts(a, []Contact{{URI: fmt.Sprintf("sip:u@10.0.0.%d", i)}})
	b.DialogPublished(pua.Key{PresURI: a, Event: "dialog", ID: "x"}, dialogOf("confirmed", "recipient", false, "sip:bob@example.com"))
	b.PublishResult(pua.Key{PresURI: a, Event: "presence"}, "modify", pua.Result{Status: 403, Reason: "Forbidden"})
	b.Watchers(a, []Watcher{{URI: "sip:w@example.com", Event: "presence", Status: "active"}})
}

// TestNothingRenderedWhileNobodyWatches: with no client, the changes of
// every kind (AoRs, a shared line, the presence server) render no
// document and take no version; a client connecting then gets the latest
// state of every item in one snapshot, each rendered once.
func TestNothingRenderedWhileNobodyWatches(t *testing.T) {
	ln := Line{AoR: "sip:line@example.com", Phones: []LinePhone{{Contact: "sip:p1@10.0.0.9"}}}
	b := New(Options{Lines: fakeLines{ln: ln}, Server: func(context.Context) error { return errors.New("down") }, ServerName: "ps"})
	srv := httptest.NewServer(b)
	defer srv.Close()
	defer b.Close()
	const n = flushChunk + 44 // more than one hold of the lock
	for round := range 3 {
		for i := range n {
			changeAll(b, i)
		}
		b.Contacts("sip:u0@example.com", []Contact{{URI: fmt.Sprint("sip:u@10.0.0.", 100+round)}})
		b.poll(context.Background())
	}
	if r, v := stats(b); r != 0 || v != 0 {
		t.Fatalf("nobody watching: %d documents rendered, hub at version %d", r, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snap := readEvent(t, openStream(t, ctx, srv.URL, ""))
	if snap.name != "snapshot" || len(snap.data.Items) != n+2 {
		t.Fatalf("snapshot: %s with %d items, want %d", snap.name, len(snap.data.Items), n+2)
	}
	got := map[string]json.RawMessage{}
	for _, it := range snap.data.Items {
		got[it.K] = it.V
	}
	for i := range n {
		var d aorDoc
		if err := json.Unmarshal(got[fmt.Sprintf("a:sip:u%d@example.com", i)], &d); err != nil {
			t.Fatalf("u%d: %v", i, err)
		}
		uri := fmt.Sprintf("sip:u@10.0.0.%d", i)
		if i == 0 {
			uri = "sip:u@10.0.0.102"
		}
		if d.Reg != RegRegistered || len(d.Contacts) != 1 || d.Contacts[0].URI != uri || d.Lamp != LampTalking ||
			len(d.Pubs) != 1 || d.Pubs[0].Status != 403 || d.Watchers != 1 {
			t.Errorf("u%d: %+v", i, d)
		}
	}
	var sd serverDoc
	if err := json.Unmarshal(got[keyServer], &sd); err != nil || !sd.Watched || sd.Up || sd.Error != "down" {
		t.Errorf("server %s (%v)", got[keyServer], err)
	}
	var ld lineDoc
	if err := json.Unmarshal(got[keyLine+ln.AoR], &ld); err != nil || len(ld.Phones) != 1 || ld.Phones[0].Contact != "sip:p1@10.0.0.9" {
		t.Errorf("line %s (%v)", got[keyLine+ln.AoR], err)
	}
	if r, v := stats(b); r != n+2 || v != n+2 {
		t.Fatalf("after the snapshot: %d documents rendered, hub at version %d; want %d each", r, v, n+2)
	}
}

// TestResumeAfterChangesNobodyWatched: a page that reconnects with its
// Last-Event-ID after changes made while no stream was open gets exactly
// the items whose document changed, in the order of their last change, at
// their latest state; what nobody watched was not rendered meanwhile.
func TestResumeAfterChangesNobodyWatched(t *testing.T) {
	b := New(Options{Coalesce: time.Millisecond})
	srv := httptest.NewServer(b)
	defer srv.Close()
	defer b.Close()
	for i := range 4 {
		b.Contacts(fmt.Sprintf("sip:u%d@example.com", i), []Contact{{URI: "sip:u@10.0.0.1"}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	snap := readEvent(t, openStream(t, ctx, srv.URL, ""))
	if len(snap.data.Items) != 5 {
		t.Fatalf("snapshot %+v", snap)
	}
	cancel()
	waitNoClients(t, b)
	before, _ := stats(b)

	b.Contacts("sip:u1@example.com", []Contact{{URI: "sip:u@10.0.0.2"}})
	b.Contacts("sip:u2@example.com", []Contact{{URI: "sip:u@10.0.0.2"}})
	b.Contacts("sip:u3@example.com", []Contact{{URI: "sip:u@10.0.0.1"}}) // the same document: no change
	b.Contacts("sip:u1@example.com", []Contact{{URI: "sip:u@10.0.0.3"}}) // u1 changed last
	b.Contacts("sip:u9@example.com", nil)                                // a new AoR
	if r, _ := stats(b); r != before {
		t.Fatalf("%d documents rendered while nobody watched", r-before)
	}

	res := readEvent(t, openStream(t, context.Background(), srv.URL, snap.id))
	keys := []string{}
	for _, it := range res.data.Items {
		keys = append(keys, it.K)
	}
	if res.name != "delta" || strings.Join(keys, " ") != "a:sip:u2@example.com a:sip:u1@example.com a:sip:u9@example.com" {
		t.Fatalf("resume from %s: %s %v", snap.id, res.name, keys)
	}
	if !strings.Contains(string(res.data.Items[1].V), "10.0.0.3") {
		t.Fatalf("u1 resumed at %s", res.data.Items[1].V)
	}
}

// TestLineGoneWhileNobodyWatched: a shared line a page saw, removed while
// no stream was open, is listed as gone when the page resumes.
func TestLineGoneWhileNobodyWatched(t *testing.T) {
	gone := false
	b := New(Options{Lines: fakeLines{ln: Line{AoR: "sip:line@example.com"}, gone: &gone}})
	srv := httptest.NewServer(b)
	defer srv.Close()
	defer b.Close()
	b.poll(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	snap := readEvent(t, openStream(t, ctx, srv.URL, ""))
	if len(snap.data.Items) != 2 {
		t.Fatalf("snapshot %+v", snap)
	}
	cancel()
	waitNoClients(t, b)
	gone = true
	b.refreshLines()
	if _, v := stats(b); v != 2 {
		t.Fatalf("the removal nobody watched took a version: %d", v)
	}
	res := readEvent(t, openStream(t, context.Background(), srv.URL, snap.id))
	if res.name != "delta" || len(res.data.Items) != 0 || len(res.data.Gone) != 1 || res.data.Gone[0] != keyLine+"sip:line@example.com" {
		t.Fatalf("resume from %s: %+v", snap.id, res)
	}
}

// TestWatchedChangesStream: while a page watches, a change made after it
// connected reaches it in a delta.
func TestWatchedChangesStream(t *testing.T) {
	b := New(Options{Coalesce: time.Millisecond})
	srv := httptest.NewServer(b)
	defer srv.Close()
	defer b.Close()
	r := openStream(t, context.Background(), srv.URL, "")
	if snap := readEvent(t, r); len(snap.data.Items) != 1 {
		t.Fatalf("snapshot %+v", snap)
	}
	for i := range 20 {
		b.Contacts("sip:a@example.com", []Contact{{URI: fmt.Sprint("sip:a@10.0.0.", i)}})
	}
	for range 20 {
		d := readEvent(t, r)
		if len(d.data.Items) == 1 && strings.Contains(string(d.data.Items[0].V), "10.0.0.19") {
			return
		}
	}
	t.Fatal("the last change never reached the page")
}

// TestPublishSuccessChangesNothing: a successful PUBLISH after a success
// (or on an AoR never refused) renders nothing and leaves the hub's
// version alone; the success that clears a refusal is a change.
func TestPublishSuccessChangesNothing(t *testing.T) {
	b := New(Options{})
	a := "sip:alice@example.com"
	key := pua.Key{PresURI: a, Event: "presence"}
	ok := pua.Result{Status: 200, Reason: "OK"}
	b.PublishResult(key, "initial", ok) // a new AoR: on the board
	aorOf(t, b, a)
	r0, v0 := stats(b)
	for range 5 {
		b.PublishResult(key, "refresh", ok)
		b.PublishResult(pua.Key{PresURI: a, Event: "dialog"}, "modify", pua.Result{Status: 202, Reason: "Accepted"})
	}
	b.Watchers(a, nil) // still none
	b.flush()
	if r, v := stats(b); r != r0 || v != v0 {
		t.Fatalf("successes rendered %d documents, moved the hub from version %d to %d", r-r0, v0, v)
	}
	b.PublishResult(key, "modify", pua.Result{Status: 500, Reason: "Oops"})
	if d := aorOf(t, b, a); len(d.Pubs) != 1 {
		t.Fatalf("after the refusal: %+v", d.Pubs)
	}
	b.PublishResult(key, "modify", ok)
	if d := aorOf(t, b, a); len(d.Pubs) != 0 {
		t.Fatalf("after the success: %+v", d.Pubs)
	}
	if r, v := stats(b); r != r0+2 || v != v0+2 {
		t.Fatalf("a refusal and its clearing: %d renders, version %d; want 2 and %d", r-r0, v, v0+2)
	}
	// Both between two reads: rendered once, the same document as before.
	b.PublishResult(key, "modify", pua.Result{Status: 500, Reason: "Oops"})
	b.PublishResult(key, "modify", ok)
	b.flush()
	if r, v := stats(b); r != r0+3 || v != v0+2 {
		t.Fatalf("a refusal and its clearing unread: %d renders, version %d; want 3 and %d", r-r0, v, v0+2)
	}
	if det, _ := b.Detail(a); len(det.Events) != 15 {
		t.Fatalf("%d events in the history, want 15", len(det.Events))
	}
}

// TestHistoryText: the history lines built from their parts read as they
// always did.
func TestHistoryText(t *testing.T) {
	clk := clocktest.New(t0)
	b := New(Options{Clock: clk})
	a := "sip:alice@example.com"
	b.PublishResult(pua.Key{PresURI: a, Event: "presence"}, "initial", pua.Result{Status: 403, Reason: "Forbidden"})
	b.PublishResult(pua.Key{PresURI: a, Event: "Dialog"}, "modify", pua.Result{Err: errors.New("no route to host")})
	b.PublishResult(pua.Key{PresURI: a, Event: "dialog"}, "remove", pua.Result{Status: 408, Reason: "Timeout", Err: errors.New("timed out")})
	b.Watchers(a, []Watcher{{URI: "sip:w@example.com"}, {URI: "sip:v@example.com"}})
	b.Watchers(a, nil)

	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "alice", Host: "example.com"})
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "bob", Host: "example.com"}, Params: sip.NewParams()})
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "example.com"}, Params: sip.NewParams()})
	cid := sip.CallIDHeader("c1@host")
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	b.SIP(event.SIP{Msg: req})
	b.SIP(event.SIP{Msg: sip.NewResponseFromRequest(req, 180, "Ringing", nil)})
	b.SIP(event.SIP{Msg: sip.NewResponseFromRequest(req, 486, "Busy "+strings.Repeat("é", 120), nil)})
	reg := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "example.com"})
	reg.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "example.com"}, Params: sip.NewParams()})
	reg.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "example.com"}, Params: sip.NewParams()})
	reg.AppendHeader(&sip.CSeqHeader{SeqNo: 2, MethodName: sip.REGISTER})
	reg.AppendHeader(sip.NewHeader("Expires", "60"))
	reg.AppendHeader(sip.NewHeader("User-Agent", "Yealink"))
	b.SIP(event.SIP{Msg: reg})
	b.SIP(event.SIP{Msg: sip.NewResponseFromRequest(reg, 200, "OK", nil)})

	long := clip(fmt.Sprintf("%d %s (%s) Call-ID %s", 486, "Busy "+strings.Repeat("é", 120), "INVITE", "c1@host"))
	want := []string{
		"PUBLISH presence (initial) → 403 Forbidden",
		"PUBLISH Dialog (modify) → no route to host",
		"PUBLISH dialog (remove) → 408 Timeout",
		"2 watcher(s)",
		"0 watcher(s)",
		"INVITE sip:bob@example.com → sip:alice@example.com Call-ID c1@host",
		"180 Ringing (INVITE) Call-ID c1@host",
		long,
		"REGISTER Expires 60 (Yealink)",
		"200 OK (REGISTER)",
	}
	det, ok := b.Detail(a)
	if !ok || len(det.Events) != len(want) {
		t.Fatalf("detail %+v", det.Events)
	}
	for i, ev := range det.Events {
		if ev.Text != want[i] || !ev.At.Equal(t0) {
			t.Errorf("event %d: %q at %v, want %q", i, ev.Text, ev.At, want[i])
		}
	}
	if !strings.HasSuffix(long, "…") || len(long) > maxText+len("…") {
		t.Errorf("the long line is not clipped: %q", long)
	}
	// The caller's history has the call too.
	if det, _ := b.Detail("sip:bob@example.com"); det.AoR != "" {
		t.Errorf("bob is on the board: %+v", det)
	}
	b.Contacts("sip:bob@example.com", nil)
	if det, _ := b.Detail("sip:bob@example.com"); len(det.Events) != 3 || det.Events[1].Text != want[6] {
		t.Errorf("bob's history %+v", det.Events)
	}
}

// BenchmarkObserveUnwatched is the board's cost per change while nobody
// watches it.
func BenchmarkObserveUnwatched(bm *testing.B) {
	b := New(Options{})
	key := pua.Key{PresURI: "sip:alice@example.com", Event: "dialog", ID: "x"}
	d := dialogOf("confirmed", "recipient", false, "sip:bob@example.com")
	idle := dialogdoc.Dialog{ID: "d1", State: "terminated"}
	cs := []Contact{{URI: "sip:alice@10.0.0.1"}}
	bm.ReportAllocs()
	for i := 0; bm.Loop(); i++ {
		b.Contacts(key.PresURI, cs)
		b.PublishResult(key, "modify", pua.Result{Status: 200, Reason: "OK"})
		if i%2 == 0 {
			b.DialogPublished(key, d)
		} else {
			b.DialogPublished(key, idle)
		}
	}
}

// BenchmarkHistorySIP is the board's cost of a REGISTER and its 200 in
// the history.
func BenchmarkHistorySIP(bm *testing.B) {
	b := New(Options{})
	reg := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "example.com"})
	reg.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "example.com"}, Params: sip.NewParams()})
	reg.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "example.com"}, Params: sip.NewParams()})
	reg.AppendHeader(&sip.CSeqHeader{SeqNo: 2, MethodName: sip.REGISTER})
	reg.AppendHeader(sip.NewHeader("Expires", "3600"))
	reg.AppendHeader(sip.NewHeader("User-Agent", "Yealink SIP-T46S"))
	cid := sip.CallIDHeader("a84b4c76e66710@pc33.example.com")
	reg.AppendHeader(&cid)
	reg.CallID()
	res := sip.NewResponseFromRequest(reg, 200, "OK", nil)
	bm.ReportAllocs()
	for bm.Loop() {
		b.SIP(event.SIP{Msg: reg})
		b.SIP(event.SIP{Msg: res})
	}
}
