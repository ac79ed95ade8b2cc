package dialoginfo

import (
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/internal/puatest"
	"github.com/puaside/puaside/internal/puatest/recorder"
	"github.com/puaside/puaside/pua"
)

// memStore is an in-memory Store: two tables of the kit.
type memStore struct {
	rows     *puatest.Table[string, Record]
	versions *puatest.Table[string, uint64]
}

func newMemStore() *memStore {
	return &memStore{rows: puatest.NewTable[string, Record](), versions: puatest.NewTable[string, uint64]()}
}

func (s *memStore) LoadDialogs(context.Context) ([]Record, error) {
	var out []Record
	for _, r := range s.rows.Rows() {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (s *memStore) SaveDialogs(_ context.Context, up []Record, rm []string) error {
	return s.rows.Write(func(rows map[string]Record) {
		for _, id := range rm {
			delete(rows, id)
		}
		for _, r := range up {
			rows[r.ID] = r
		}
	})
}

func (s *memStore) LoadDialogVersions(context.Context) (map[string]uint64, error) {
	return s.versions.Rows(), nil
}

func (s *memStore) SaveDialogVersions(_ context.Context, v map[string]uint64) error {
	return s.versions.Write(func(rows map[string]uint64) {
		for k, n := range v {
			if n > rows[k] {
				rows[k] = n
			}
		}
	})
}

// feed sends fixture files of a testdata case to a tracker.
func feed(t *testing.T, tr *Tracker, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		m := puatest.ParseSIP(t, loadSIP(t, filepath.Join("testdata", dir, n)))
		tr.HandleSIP(context.Background(), event.SIP{Msg: m, Source: event.SourceTrace})
	}
}

// TestRestartMidCall: a call confirmed before a restart still ends at BYE
// after it, with versions continuing, and nothing is re-published at start.
func TestRestartMidCall(t *testing.T) {
	st := newMemStore()
	clk := newFakeClock()
	pub1 := recorder.New()
	tr1, err := New(DefaultConfig(), Options{Publisher: pub1, Store: st, Clock: clk, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	feed(t, tr1, "basic", "01.sip", "02.sip", "03.sip", "04.sip", "05.sip", "06.sip", "07.sip", "08.sip")
	if err := tr1.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := pub1.Take()
	if st.rows.Len() != 1 {
		t.Fatalf("stored %d calls, want 1", st.rows.Len())
	}

	pub2 := recorder.New()
	tr2, err := New(DefaultConfig(), Options{Publisher: pub2, Store: st, Clock: clk, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ops := pub2.Take(); len(ops) != 0 {
		t.Fatalf("start re-published %d times", len(ops))
	}
	if ds := tr2.Dialogs(); len(ds) != 1 || ds[0].State != "confirmed" {
		t.Fatalf("after restart: %+v", ds)
	}
	// A duplicate 200 changes nothing; the BYE ends the lamp.
	feed(t, tr2, "basic", "07.sip", "09.sip")
	ops := pub2.Take()
	if len(ops) != 2 {
		t.Fatalf("BYE after restart gave %d operations, want 2", len(ops))
	}
	val := newValidator()
	for _, op := range before {
		if err := val.check(op.Key.PresURI, op.Req.Body); err != nil {
			t.Fatal(err)
		}
	}
	for _, op := range ops {
		if err := val.check(op.Key.PresURI, op.Req.Body); err != nil {
			t.Fatalf("after restart: %v", err) // version must continue
		}
	}
	tr2.Expire(clk.Advance(time.Minute))
	// The terminated documents lapse: no removal after the linger.
	if ops := pub2.Take(); len(ops) != 0 {
		t.Fatalf("operations after the linger: %+v", ops)
	}
	if n := stuck(pub2); n != 0 || lapsing(pub2) != 2 {
		t.Fatalf("after the linger: %d publications stuck, %d lapsing", n, lapsing(pub2))
	}
	if err := tr2.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st.rows.Len() != 0 {
		t.Fatalf("ended call still stored: %v", st.rows.Rows())
	}
}

// TestRestartRearmsTimers: an early dialog stored before a restart still
// times out after it.
func TestRestartRearmsTimers(t *testing.T) {
	st := newMemStore()
	clk := newFakeClock()
	tr1, _ := New(DefaultConfig(), Options{Publisher: recorder.New(), Store: st, Clock: clk, Logger: quietLog()})
	feed(t, tr1, "ring-timeout", "01.sip", "02.sip")
	if err := tr1.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	pub := recorder.New()
	tr2, _ := New(DefaultConfig(), Options{Publisher: pub, Store: st, Clock: clk, Logger: quietLog()})
	if err := tr2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	tr2.Expire(clk.Advance(2 * time.Minute))
	tr2.Expire(clk.Advance(time.Minute))
	ops := pub.Take()
	if len(ops) != 2 || ops[0].Kind != recorder.Publish || ops[1].Kind != recorder.Publish ||
		ops[0].Req.Lifetime == 0 || ops[1].Req.Lifetime == 0 {
		t.Fatalf("want 2 timeout publishes left to lapse and no removal, got %+v", ops)
	}
	if n := stuck(pub); n != 0 {
		t.Fatalf("%d publications stuck", n)
	}
	if len(tr2.calls) != 0 {
		t.Fatalf("call still tracked")
	}
}

func TestFlushFailureKeepsChanges(t *testing.T) {
	st := newMemStore()
	st.rows.FailWrites(errors.New("db down"))
	tr, _ := New(DefaultConfig(), Options{Publisher: recorder.New(), Store: st, Clock: newFakeClock(), Logger: quietLog()})
	feed(t, tr, "basic", "01.sip")
	if err := tr.Flush(context.Background()); err == nil {
		t.Fatal("flush error not reported")
	}
	st.rows.FailWrites(nil)
	if err := tr.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v, _ := st.versions.Get("sip:user0001@harness.test"); st.rows.Len() != 1 || v != 1 {
		t.Fatalf("changes lost after a failed flush: %v %v", st.rows.Rows(), st.versions.Rows())
	}
}

func TestStartSkipsBadRecords(t *testing.T) {
	st := newMemStore()
	st.rows.Put("x", Record{ID: "x", CallID: "c", FromTag: "f", Data: []byte("{not json")})
	st.rows.Put("y", Record{ID: "y", CallID: "c2", FromTag: "f", Data: []byte(`{"call_id":"c2","from_tag":"f","branches":[{"id":"","state":9}]}`)})
	tr, _ := New(DefaultConfig(), Options{Publisher: recorder.New(), Store: st, Logger: quietLog()})
	if err := tr.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(tr.calls) != 0 {
		t.Fatalf("bad records loaded: %d", len(tr.calls))
	}
}

func TestApplyDialogStateErrors(t *testing.T) {
	tr, _ := New(DefaultConfig(), Options{Publisher: recorder.New(), Logger: quietLog()})
	ctx := context.Background()
	for _, d := range []event.DialogState{
		{State: "early"},
		{CallID: "c", FromTag: "f", State: "ringing"},
		{CallID: "c", FromTag: "f", State: "terminated", Event: "exploded"},
		{CallID: "c", FromTag: "f", State: "trying"}, // no From/To for a new call
	} {
		if err := tr.ApplyDialogState(ctx, d); !errors.Is(err, ErrBadEvent) {
			t.Errorf("ApplyDialogState(%+v) = %v, want ErrBadEvent", d, err)
		}
	}
}

func TestDialogsListing(t *testing.T) {
	tr, _ := New(DefaultConfig(), Options{Publisher: recorder.New(), Clock: newFakeClock(), Logger: quietLog()})
	feed(t, tr, "forking", "01.sip", "03.sip", "04.sip")
	ds := tr.Dialogs()
	if len(ds) != 2 || ds[0].State != "early" || ds[1].State != "early" || ds[0].ToTag == ds[1].ToTag {
		t.Fatalf("listing: %+v", ds)
	}
	feed(t, tr, "forking", "05.sip")
	states := map[string]string{}
	for _, d := range tr.Dialogs() {
		states[d.ToTag] = d.State + "/" + d.Event
	}
	if states["mobile"] != "confirmed/" || states["desk"] != "terminated/cancelled" {
		t.Fatalf("after answer: %v", states)
	}
}

func TestNewNeedsPublisher(t *testing.T) {
	if _, err := New(DefaultConfig(), Options{}); err == nil {
		t.Fatal("New without publisher accepted")
	}
}

func TestSelfCallKeepsPublicationsApart(t *testing.T) {
	pub := recorder.New()
	tr, _ := New(DefaultConfig(), Options{Publisher: pub, Logger: quietLog()})
	raw := "INVITE sip:a@x SIP/2.0\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\nFrom: <sip:a@x>;tag=1\nTo: <sip:a@x>\nCall-ID: self\nCSeq: 1 INVITE\n\n"
	m, err := sip.ParseMessage(puatest.FixSIP([]byte(raw)))
	if err != nil {
		t.Fatal(err)
	}
	tr.HandleSIP(context.Background(), event.SIP{Msg: m})
	res := "SIP/2.0 180 Ringing\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\nFrom: <sip:a@x>;tag=1\nTo: <sip:a@x>;tag=2\nCall-ID: self\nCSeq: 1 INVITE\n\n"
	m, _ = sip.ParseMessage(puatest.FixSIP([]byte(res)))
	tr.HandleSIP(context.Background(), event.SIP{Msg: m})
	if len(pub.Live()) != 2 {
		t.Fatalf("self call: %d live publications, want 2", len(pub.Live()))
	}
}

// listingPub is a publisher that can list what it holds, as the engine does.
type listingPub struct {
	*recorder.Recorder
	held []pua.PublicationInfo
}

func (p listingPub) Publications() []pua.PublicationInfo { return p.held }

// TestRestartRepublishesLostDialogs: a dialog whose publication the engine
// no longer holds after a restart (it expired while puaside was down, or the
// engine's table lagged at a crash) is published again; one it holds is not.
func TestRestartRepublishesLostDialogs(t *testing.T) {
	st := newMemStore()
	clk := newFakeClock()
	pub1 := recorder.New()
	tr1, _ := New(DefaultConfig(), Options{Publisher: pub1, Store: st, Clock: clk, Logger: quietLog()})
	feed(t, tr1, "basic", "01.sip", "02.sip", "03.sip", "04.sip", "05.sip", "06.sip", "07.sip", "08.sip")
	if err := tr1.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var held []pua.PublicationInfo
	for k := range pub1.Live() {
		held = append(held, pua.PublicationInfo{Key: k, Flag: pua.FlagDialogPublish})
	}
	if len(held) != 2 {
		t.Fatalf("%d live publications before restart, want 2", len(held))
	}

	// The engine still holds both: nothing is sent.
	kept := listingPub{Recorder: recorder.New(), held: held}
	tr2, _ := New(DefaultConfig(), Options{Publisher: kept, Store: st, Clock: clk, Logger: quietLog()})
	if err := tr2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ops := kept.Take(); len(ops) != 0 {
		t.Fatalf("start re-published %d times although the engine holds the dialogs", len(ops))
	}

	// The engine lost the callee's publication: it alone is sent again.
	lost := listingPub{Recorder: recorder.New(), held: held[:0:0]}
	for _, h := range held {
		if !strings.Contains(h.Key.PresURI, "user0002") && !strings.Contains(h.Key.PresURI, "callee") {
			lost.held = append(lost.held, h)
		}
	}
	tr3, _ := New(DefaultConfig(), Options{Publisher: lost, Store: st, Clock: clk, Logger: quietLog()})
	if err := tr3.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ops := lost.Take()
	if len(ops) != len(held)-len(lost.held) || len(ops) == 0 {
		t.Fatalf("restart sent %d operations, want %d", len(ops), len(held)-len(lost.held))
	}
	for _, op := range ops {
		if (op.Kind == recorder.Remove) || !strings.Contains(string(op.Req.Body), "<state>confirmed</state>") {
			t.Fatalf("re-published %+v", op)
		}
	}
}

// TestRestartRepublishesChangedDialogs: the engine holds another document
// of a dialog than the tracker's table (an earlier one: the early document
// of a call the table knows as confirmed): the restarted tracker publishes
// its own view again instead of leaving the engine refreshing the other
// document.
func TestRestartRepublishesChangedDialogs(t *testing.T) {
	st := newMemStore()
	clk := newFakeClock()
	pub1 := recorder.New()
	tr1, _ := New(DefaultConfig(), Options{Publisher: pub1, Store: st, Clock: clk, Logger: quietLog()})
	feed(t, tr1, "basic", "01.sip", "02.sip", "03.sip", "04.sip", "05.sip", "06.sip", "07.sip", "08.sip")
	if err := tr1.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	held := heldWith(pub1, "<state>early</state>", 2)
	if len(held) != 2 {
		t.Fatalf("%d live publications before restart, want 2", len(held))
	}
	lp := listingPub{Recorder: recorder.New(), held: held}
	tr2, _ := New(DefaultConfig(), Options{Publisher: lp, Store: st, Clock: clk, Logger: quietLog()})
	if err := tr2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ops := lp.Take()
	if len(ops) != 2 {
		t.Fatalf("restart sent %d operations, want 2", len(ops))
	}
	for _, op := range ops {
		if (op.Kind == recorder.Remove) || !strings.Contains(string(op.Req.Body), "<state>confirmed</state>") {
			t.Fatalf("re-published %+v", op)
		}
	}

	// The same documents (other versions) are kept.
	same := listingPub{Recorder: recorder.New(), held: heldWith(pub1, "<state>confirmed</state>", 2)}
	tr3, _ := New(DefaultConfig(), Options{Publisher: same, Store: st, Clock: clk, Logger: quietLog()})
	if err := tr3.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ops := same.Take(); len(ops) != 0 {
		t.Fatalf("restart re-published %d unchanged documents", len(ops))
	}
}

// TestRestartKeepsHeldTermination: the engine stored the BYE's terminated
// document of a dialog, the tracker's table still has it confirmed (the
// crash came before its flush). The held document is the newer one: the
// restarted tracker ends the call instead of lighting the lamp again for a
// call that is over. When the engine holds the terminated document of one
// side only (the crash came between the two), the other side is sent its
// terminated document. Nothing is removed; everything lapses after the
// linger.
func TestRestartKeepsHeldTermination(t *testing.T) {
	for _, sides := range []int{2, 1} {
		st := newMemStore()
		clk := newFakeClock()
		pub1 := recorder.New()
		tr1, _ := New(DefaultConfig(), Options{Publisher: pub1, Store: st, Clock: clk, Logger: quietLog()})
		feed(t, tr1, "basic", "01.sip", "02.sip", "03.sip", "04.sip", "05.sip", "06.sip", "07.sip", "08.sip")
		if err := tr1.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		held := heldWith(pub1, "<state>terminated</state>", sides)
		lp := listingPub{Recorder: recorder.New(), held: held}
		tr2, _ := New(DefaultConfig(), Options{Publisher: lp, Store: st, Clock: clk, Logger: quietLog()})
		if err := tr2.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		ops := lp.Take()
		if len(ops) != 2-sides {
			t.Fatalf("%d sides terminated at the engine: restart sent %d operations, want %d", sides, len(ops), 2-sides)
		}
		for _, op := range ops {
			if op.Kind == recorder.Remove || !strings.Contains(string(op.Req.Body), "<state>terminated</state>") {
				t.Fatalf("%d sides terminated at the engine: restart sent %+v", sides, op)
			}
		}
		tr2.Expire(clk.Advance(DefaultConfig().TerminatedLinger + time.Second))
		if ops := lp.Take(); len(ops) != 0 {
			t.Fatalf("%d sides terminated at the engine: after the linger %d operations, want none (the documents lapse)", sides, len(ops))
		}
		if len(tr2.calls) != 0 {
			t.Fatalf("%d sides terminated at the engine: %d calls tracked after the linger", sides, len(tr2.calls))
		}
	}
}

// heldWith is the engine's view of pub's live dialog publications, the
// first n of them (in key order) with their confirmed state replaced by
// state.
func heldWith(pub *recorder.Recorder, state string, n int) []pua.PublicationInfo {
	live := pub.Live()
	keys := make([]pua.Key, 0, len(live))
	for k := range live {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].PresURI+keys[i].ID < keys[j].PresURI+keys[j].ID })
	var held []pua.PublicationInfo
	for i, k := range keys {
		body := string(live[k].Body)
		if i < n {
			body = strings.Replace(body, "<state>confirmed</state>", state, 1)
		}
		held = append(held, pua.PublicationInfo{Key: k, Flag: pua.FlagDialogPublish, Body: []byte(body)})
	}
	return held
}

// TestPlainCallPublishCount: a plain call (INVITE, 180, 200, ACK, BYE,
// 200 to BYE), every message seen twice as siptrace sends it, costs
// seven publications for caller and callee together (caller trying, early,
// confirmed, terminated; callee early, confirmed, terminated) and no
// removal: the terminated documents are left to lapse after
// terminated_linger, and nothing stays lit.
func TestPlainCallPublishCount(t *testing.T) {
	clk := newFakeClock()
	pub := recorder.New()
	tr, err := New(DefaultConfig(), Options{Publisher: pub, Clock: clk, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	msgs := callMsgs(t, 1)
	// Without the 100 Trying, which the proxy answers itself and does not
	// relay (a relayed one adds the caller's proceeding document).
	msgs = append(msgs[:1], msgs[2:]...)
	for _, m := range msgs {
		for range 2 {
			tr.HandleSIP(context.Background(), event.SIP{Msg: m, Source: event.SourceTrace})
		}
	}
	tr.Expire(clk.Advance(DefaultConfig().TerminatedLinger + time.Second))
	ops := pub.Take()
	var states []string
	stateRe := regexp.MustCompile(`<state[^>]*>([a-z]+)</state>`)
	for _, op := range ops {
		if op.Kind != recorder.Publish {
			t.Fatalf("%v of %s: a terminated document must lapse", op, op.Key.PresURI)
		}
		st := "?"
		if m := stateRe.FindSubmatch(op.Req.Body); m != nil {
			st = string(m[1])
		}
		if st == "terminated" && (op.Req.Lifetime != DefaultConfig().TerminatedLinger || op.Req.Expires != op.Req.Lifetime) {
			t.Errorf("terminated document with Expires %s and lifetime %s, want terminated_linger", op.Req.Expires, op.Req.Lifetime)
		}
		states = append(states, op.Key.PresURI+" "+st)
	}
	if len(ops) != 7 {
		t.Fatalf("%d publications for a plain call, want 7: %v", len(ops), states)
	}
	if n := stuck(pub); n != 0 || len(tr.calls) != 0 {
		t.Fatalf("after the linger: %d publications stuck, %d calls tracked", n, len(tr.calls))
	}
}
