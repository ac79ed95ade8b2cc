package usrloc

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/internal/puatest"
	"github.com/puaside/puaside/internal/puatest/recorder"
	"github.com/puaside/puaside/metrics"
	"github.com/puaside/puaside/pua"
)

// counter reads puaside_tracker_events_total{tracker="usrloc",what}.
func counter(t *testing.T, m *metrics.Metrics, what string) float64 {
	t.Helper()
	return puatest.TrackerEvents(t, m, "usrloc", what)
}

// describe renders publisher calls compactly: "publish <aor> open|closed" or "remove <aor>".
func describe(ops []recorder.Op) []string {
	var out []string
	for _, o := range ops {
		if o.Kind == recorder.Remove {
			out = append(out, "remove "+o.Key.PresURI)
			continue
		}
		state := "open"
		if strings.Contains(string(o.Req.Body), "<basic>closed</basic>") {
			state = "closed"
		}
		out = append(out, "publish "+o.Key.PresURI+" "+state)
	}
	return out
}

func expectOps(t *testing.T, step string, got []recorder.Op, want ...string) {
	t.Helper()
	if d := describe(got); !reflect.DeepEqual(d, want) && !(len(d) == 0 && len(want) == 0) {
		t.Fatalf("%s: publisher calls\n got %q\nwant %q", step, d, want)
	}
}

func expectContacts(t *testing.T, step string, r *rig, aor string, want ...string) {
	t.Helper()
	if got := r.contacts(aor); !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Fatalf("%s: contacts of %s\n got %q\nwant %q", step, aor, got, want)
	}
}

func TestReplicateAndExpiry(t *testing.T) {
	r := newRig(t, DefaultConfig(), newMemStore(), nil)
	const aor = "sip:user0001@harness.test"
	r.feed(t, "replicate_user0001", event.SourceReplicate)
	expectContacts(t, "register", r, aor, "sip:user0001@127.0.0.1:5111 1m0s q=-")
	ops := r.pub.Take()
	expectOps(t, "register", ops, "publish "+aor+" open")
	req := ops[0].Req
	if req.Key != (pua.Key{PresURI: aor, Event: "presence", ID: "usrloc"}) || req.Flag != pua.FlagUsrloc ||
		req.ContentType != ContentTypePIDF || req.Expires != 61*time.Second { // the contact's 60 s + 1 s
		t.Fatalf("publish request %+v", req)
	}
	golden(t, filepath.Join("flow", "replicate_open.xml"), req.Body)

	r.clock.Advance(10 * time.Second)
	r.feed(t, "replicate_user0001_cseq2", event.SourceReplicate)
	expectOps(t, "re-register", r.pub.Take())
	expectContacts(t, "re-register", r, aor, "sip:user0001@127.0.0.1:5111 1m0s q=-")
	// A late retransmission of CSeq 1 does not shorten the binding.
	r.clock.Advance(10 * time.Second)
	r.feed(t, "replicate_user0001", event.SourceReplicate)
	expectContacts(t, "stale copy", r, aor, "sip:user0001@127.0.0.1:5111 50s q=-")

	r.clock.Advance(50 * time.Second)
	r.t.expireDue()
	ops = r.pub.Take()
	expectOps(t, "expiry", ops, "publish "+aor+" closed")
	golden(t, filepath.Join("flow", "closed_user0001.xml"), ops[0].Req.Body)
	in, ok := r.t.Registration(aor)
	if !ok || in.State != "closed" || len(in.Contacts) != 0 {
		t.Fatalf("after expiry: %+v %v", in, ok)
	}
	r.clock.Advance(29 * time.Second)
	r.t.expireDue()
	expectOps(t, "linger not over", r.pub.Take())
	r.clock.Advance(time.Second)
	r.t.expireDue()
	expectOps(t, "linger over", r.pub.Take(), "remove "+aor)
	if _, ok := r.t.Registration(aor); ok {
		t.Fatal("AoR still listed after removal")
	}
	want := []string{aor + ": sip:user0001@127.0.0.1:5111", aor + ":"}
	if !reflect.DeepEqual(r.changes, want) {
		t.Fatalf("OnChange: got %q want %q", r.changes, want)
	}
}

func TestReturnDuringLinger(t *testing.T) {
	r := newRig(t, DefaultConfig(), nil, nil)
	const aor = "sip:user0001@harness.test"
	r.feed(t, "replicate_user0001", event.SourceReplicate)
	r.clock.Advance(61 * time.Second)
	r.t.expireDue()
	r.clock.Advance(10 * time.Second)
	r.feed(t, "replicate_user0001_cseq2", event.SourceReplicate)
	r.clock.Advance(25 * time.Second)
	r.t.expireDue()
	expectOps(t, "back during linger", r.pub.Take(), "publish "+aor+" open", "publish "+aor+" closed", "publish "+aor+" open")
}

func TestCraftedReplicate(t *testing.T) {
	m := metrics.New()
	r := newRig(t, DefaultConfig(), nil, nil)
	r.t.m = m
	const alice = "sip:alice@example.com"
	for _, name := range []string{"crafted_no_contact", "crafted_no_to", "crafted_to_tel", "crafted_bad_expires", "crafted_star_bad_expires"} {
		r.feed(t, name, event.SourceReplicate)
	}
	expectOps(t, "rejected", r.pub.Take())
	if len(r.t.Registrations()) != 0 {
		t.Fatalf("rejected input changed state: %+v", r.t.Registrations())
	}
	for what, n := range map[string]float64{"rejected_no_contact": 1, "rejected_no_to": 1, "rejected_to_not_sip": 1,
		"rejected_bad_expires": 1, "rejected_bad_wildcard": 1} {
		if got := counter(t, m, what); got != n {
			t.Errorf("%s = %v want %v", what, got, n)
		}
	}

	r.feed(t, "crafted_multi", event.SourceReplicate)
	expectContacts(t, "multi", r, alice,
		"sip:alice@10.0.0.1:5060;ob 5m0s q=0.5",
		"sip:alice@10.0.0.2;transport=tcp 10m0s q=1",
		"sip:alice@10.0.0.3?x=a&y=b 10m0s q=-")
	ops := r.pub.Take()
	expectOps(t, "multi", ops, "publish "+alice+" open")
	golden(t, filepath.Join("flow", "multi_open.xml"), ops[0].Req.Body)
	if got := counter(t, m, "contact_added"); got != 3 {
		t.Errorf("contact_added = %v", got)
	}

	r.feed(t, "crafted_star", event.SourceReplicate)
	expectContacts(t, "star", r, alice)
	expectOps(t, "star", r.pub.Take(), "publish "+alice+" closed")
	if got := counter(t, m, "contact_removed"); got != 3 {
		t.Errorf("contact_removed = %v", got)
	}
}

func TestTracePath(t *testing.T) {
	r := newRig(t, DefaultConfig(), nil, nil)
	const carol = "sip:carol@example.com"
	r.feed(t, "crafted_trace_req", event.SourceTrace)
	expectOps(t, "request alone", r.pub.Take())
	expectContacts(t, "request alone", r, carol)
	r.feed(t, "crafted_trace_401", event.SourceTrace)
	expectOps(t, "401", r.pub.Take())
	expectContacts(t, "401", r, carol)
	if len(r.t.Flags()) != 0 {
		t.Fatalf("401 set a flag: %v", r.t.Flags())
	}

	r.feed(t, "crafted_trace_req", event.SourceHEP)
	r.feed(t, "crafted_trace_200", event.SourceHEP)
	expectContacts(t, "2xx", r, carol, "sip:carol@10.0.0.5 30m0s q=0.8", "sip:carol@10.0.0.6 2m0s q=-")
	ops := r.pub.Take()
	expectOps(t, "2xx", ops, "publish "+carol+" open")
	golden(t, filepath.Join("flow", "trace_open.xml"), ops[0].Req.Body)
	if f := r.t.Flags(); !f[carol] {
		t.Fatalf("flag from the remembered request: %v", f)
	}

	r.feed(t, "crafted_trace_200_nocontact", event.SourceTrace)
	expectContacts(t, "2xx without contact", r, carol)
	expectOps(t, "2xx without contact", r.pub.Take(), "publish "+carol+" closed")

	// The real siptrace sample: register, then unregister.
	const u1 = "sip:user0001@harness.test"
	r.feed(t, "trace_reg_user0001", event.SourceTrace)
	expectContacts(t, "sample request", r, u1)
	r.feed(t, "trace_200_user0001", event.SourceTrace)
	expectContacts(t, "sample 200", r, u1, "sip:user0001@127.0.0.1:5111 1m0s q=-")
	r.feed(t, "trace_unreg_user0001", event.SourceTrace)
	expectContacts(t, "sample unregister request", r, u1, "sip:user0001@127.0.0.1:5111 1m0s q=-")
	r.feed(t, "trace_200_unreg_user0001", event.SourceTrace)
	expectContacts(t, "sample unregister 200", r, u1)
	expectOps(t, "sample", r.pub.Take(), "publish "+u1+" open", "publish "+u1+" closed")
}

func TestFlags(t *testing.T) {
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.PublishDefault = false
	cfg.PublishPatterns = []string{"user0001@*"}
	st := newMemStore()
	r := newRig(t, cfg, st, nil)
	const u1, u2, alice, bob = "sip:user0001@harness.test", "sip:user0002@harness.test", "sip:alice@example.com", "sip:bob@example.com"
	r.feed(t, "replicate_user0001", event.SourceReplicate)
	r.feed(t, "replicate_user0002", event.SourceReplicate)
	expectOps(t, "pattern", r.pub.Take(), "publish "+u1+" open")

	if err := r.t.SetFlag(ctx, "user0002@harness.test", true); err != nil {
		t.Fatal(err)
	}
	expectOps(t, "api on", r.pub.Take(), "publish "+u2+" open")
	if err := r.t.SetFlag(ctx, u2, false); err != nil {
		t.Fatal(err)
	}
	expectOps(t, "api off", r.pub.Take(), "remove "+u2)
	if err := r.t.SetFlag(ctx, u1, false); err != nil {
		t.Fatal(err)
	}
	expectOps(t, "explicit flag beats pattern", r.pub.Take(), "remove "+u1)
	if in, _ := r.t.Registration(u1); in.Publish || in.Flag == nil || *in.Flag {
		t.Fatalf("flag off on a pattern AoR: info %+v, want Publish false Flag false", in)
	}
	if err := r.t.ClearFlag(ctx, u1); err != nil {
		t.Fatal(err)
	}
	expectOps(t, "cleared flag, pattern again", r.pub.Take(), "publish "+u1+" open")
	if err := r.t.SetFlag(ctx, u1, false); err != nil {
		t.Fatal(err)
	}
	r.pub.Take()
	if err := r.t.ClearFlag(ctx, u2); err != nil {
		t.Fatal(err)
	}
	expectOps(t, "clear", r.pub.Take())
	if _, ok := st.flags.Get(u2); ok {
		t.Fatal("ClearFlag left the stored flag")
	}
	if err := r.t.SetFlag(ctx, "tel:1", true); err == nil {
		t.Fatal("SetFlag accepted a tel: AoR")
	}

	r.feed(t, "crafted_multi", event.SourceReplicate) // X-Puaside-Publish: yes
	expectOps(t, "header on", r.pub.Take(), "publish "+alice+" open")
	r.feed(t, "crafted_flag_off_unreg", event.SourceReplicate)
	expectOps(t, "header off", r.pub.Take())
	if err := r.t.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{alice: true, bob: false, u1: false}
	if got := st.flags.Rows(); !reflect.DeepEqual(got, want) {
		t.Fatalf("stored flags %v want %v", got, want)
	}
	if in, _ := r.t.Registration(alice); !in.Publish || in.Flag == nil || !*in.Flag || in.State != "open" {
		t.Fatalf("info %+v", in)
	}
}

func TestApplyRegistration(t *testing.T) {
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.DefaultDomain = "pbx.example.com"
	r := newRig(t, cfg, nil, nil)
	const dave = "sip:dave@pbx.example.com"
	err := r.t.ApplyRegistration(ctx, event.Registration{AoR: "dave", Contacts: []event.Contact{
		{URI: "sip:dave@10.0.0.1", Expires: 5, Q: -1},
		{URI: "sip:dave@10.0.0.2", Expires: 100000, Q: 0.1},
		{URI: "sip:dave@10.0.0.3", Expires: -1, Q: -1},
	}, Source: event.SourceJSON})
	if err != nil {
		t.Fatal(err)
	}
	expectContacts(t, "clamped", r, dave,
		"sip:dave@10.0.0.1 1m0s q=-", "sip:dave@10.0.0.2 2h0m0s q=0.1", "sip:dave@10.0.0.3 1h0m0s q=-")
	if err := r.t.ApplyRegistration(ctx, event.Registration{AoR: "dave", Complete: true,
		Contacts: []event.Contact{{URI: "sip:dave@10.0.0.2", Expires: 60, Q: 0.1}}}); err != nil {
		t.Fatal(err)
	}
	expectContacts(t, "complete", r, dave, "sip:dave@10.0.0.2 1m0s q=0.1")
	off := false
	if err := r.t.ApplyRegistration(ctx, event.Registration{AoR: "dave", Publish: &off}); err != nil {
		t.Fatal(err)
	}
	if err := r.t.ApplyRegistration(ctx, event.Registration{AoR: "dave", RemoveAll: true}); err != nil {
		t.Fatal(err)
	}
	expectContacts(t, "remove all", r, dave)
	expectOps(t, "json", r.pub.Take(), "publish "+dave+" open", "publish "+dave+" open", "remove "+dave)
	for _, bad := range []event.Registration{
		{AoR: "tel:+1"}, {AoR: "x", Contacts: []event.Contact{{URI: ""}}}, {AoR: "x", Contacts: []event.Contact{{URI: "sip:a@b", Q: 2}}},
	} {
		if err := r.t.ApplyRegistration(ctx, bad); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

func TestRestart(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	r1 := newRig(t, DefaultConfig(), st, nil)
	r1.feed(t, "replicate_user0001", event.SourceReplicate) // 60 s
	r1.feed(t, "replicate_user0002", event.SourceReplicate) // 120 s
	if err := r1.t.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	const u1, u2 = "sip:user0001@harness.test", "sip:user0002@harness.test"

	// Restart 10 s later: nothing changed, nothing is published.
	r2 := newRig(t, DefaultConfig(), st, nil)
	r2.clock.Advance(10 * time.Second)
	if err := r2.t.Start(ctx); err != nil {
		t.Fatal(err)
	}
	expectOps(t, "restart unchanged", r2.pub.Take())
	expectContacts(t, "restart unchanged", r2, u1, "sip:user0001@127.0.0.1:5111 50s q=-")
	r2.feed(t, "replicate_user0001_cseq2", event.SourceReplicate)
	expectOps(t, "re-register after restart", r2.pub.Take())
	r2.clock.Advance(61 * time.Second)
	r2.t.expireDue()
	expectOps(t, "expiry after restart", r2.pub.Take(), "publish "+u1+" closed")

	// Restart 90 s after the registrations: user0001 lapsed while down.
	r3 := newRig(t, DefaultConfig(), st, nil)
	r3.clock.Advance(90 * time.Second)
	if err := r3.t.Start(ctx); err != nil {
		t.Fatal(err)
	}
	expectOps(t, "restart after lapse", r3.pub.Take(), "publish "+u1+" closed")
	expectContacts(t, "restart after lapse", r3, u2, "sip:user0002@127.0.0.1:5112 30s q=-")
	if err := r3.t.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.contacts.Get(u1); ok {
		t.Fatal("lapsed contacts still stored")
	}

	// With an engine that lists its publications: compare with those, and
	// close an orphan.
	lp := listerPub{Recorder: recorder.New()}
	open2 := BuildPIDF(u2, []Binding{{URI: "sip:user0002@127.0.0.1:5112", Q: -1}})
	lp.pubs = []pua.PublicationInfo{
		{Key: pua.Key{PresURI: u2, Event: "presence", ID: "usrloc"}, Flag: pua.FlagUsrloc, Body: open2},
		{Key: pua.Key{PresURI: "sip:ghost@x", Event: "presence", ID: "usrloc"}, Flag: pua.FlagUsrloc, Body: []byte("<presence/>")},
		{Key: pua.Key{PresURI: "sip:other@x", Event: "presence", ID: "UL_PUBLISH.1"}, Flag: pua.FlagUsrloc, Body: []byte("x")},
		// Adopted from Kamailio's pua_usrloc: no body, registration unknown.
		{Key: pua.Key{PresURI: "sip:adopted@x", Event: "presence", ID: "usrloc"}, Flag: pua.FlagUsrloc},
	}
	r4 := newRig(t, DefaultConfig(), st, lp)
	r4.clock.Advance(20 * time.Second)
	if err := r4.t.Start(ctx); err != nil {
		t.Fatal(err)
	}
	expectOps(t, "lister", r4.pub.Take(), "publish sip:ghost@x closed")
	r4.clock.Advance(30 * time.Second)
	r4.t.expireDue()
	expectOps(t, "orphan linger", r4.pub.Take(), "remove sip:ghost@x")
}

func TestRunLoop(t *testing.T) {
	st := newMemStore()
	r := newRig(t, DefaultConfig(), st, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() { runErr = r.t.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return")
		}
	})
	r.feed(t, "replicate_user0001", event.SourceReplicate)
	var seen []string
	for i := 0; i < 400 && len(seen) < 3; i++ {
		r.clock.Advance(time.Second)
		time.Sleep(2 * time.Millisecond)
		seen = append(seen, describe(r.pub.Take())...)
	}
	want := []string{"publish sip:user0001@harness.test open", "publish sip:user0001@harness.test closed", "remove sip:user0001@harness.test"}
	if !reflect.DeepEqual(seen, want) {
		t.Fatalf("Run: got %q want %q", seen, want)
	}
	cancel()
	select {
	case <-done:
		if runErr != nil {
			t.Fatal(runErr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	if st.contacts.Writes() == 0 || st.contacts.Len() != 0 {
		t.Fatalf("store after run: saves=%d contacts=%v", st.contacts.Writes(), st.contacts.Rows())
	}
}

// TestSetPublishingReload changes the patterns and the default at run time:
// AoRs that become published are published, those that stop are removed,
// and an explicit flag still wins.
func TestSetPublishingReload(t *testing.T) {
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.PublishDefault = false
	st := newMemStore()
	r := newRig(t, cfg, st, nil)
	const u1, u2 = "sip:user0001@harness.test", "sip:user0002@harness.test"
	r.feed(t, "replicate_user0001", event.SourceReplicate)
	r.feed(t, "replicate_user0002", event.SourceReplicate)
	expectOps(t, "nothing published", r.pub.Take())
	if err := r.t.SetFlag(ctx, u2, false); err != nil {
		t.Fatal(err)
	}
	r.pub.Take()
	if err := r.t.SetPublishing([]string{"*@harness.test"}, false); err != nil {
		t.Fatal(err)
	}
	expectOps(t, "pattern added", r.pub.Take(), "publish "+u1+" open")
	if err := r.t.SetPublishing(nil, false); err != nil {
		t.Fatal(err)
	}
	expectOps(t, "pattern removed", r.pub.Take(), "remove "+u1)
	if err := r.t.SetPublishing([]string{"re:("}, true); err == nil {
		t.Fatal("a bad pattern was accepted")
	}
	expectOps(t, "bad pattern changes nothing", r.pub.Take())
	if err := r.t.SetPublishing(nil, true); err != nil {
		t.Fatal(err)
	}
	expectOps(t, "default on", r.pub.Take(), "publish "+u1+" open")
}

// gateStore is a memStore whose first SetFlag of the value held waits at
// a gate, then fails with fail (nil: succeeds): a flush caught between
// taking the flags to write and writing them.
type gateStore struct {
	*memStore
	held    bool
	fail    error
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (s *gateStore) SetFlag(ctx context.Context, aor string, on bool) error {
	if on == s.held {
		gated := false
		s.once.Do(func() { gated = true })
		if gated {
			close(s.entered)
			<-s.release
			if s.fail != nil {
				return s.fail
			}
		}
	}
	return s.memStore.SetFlag(ctx, aor, on)
}

// TestSetFlagWinsOverRacingFlush: a flag set or cleared through the
// management API while a flush is writing the older flag a REGISTER header
// set is the one stored, whether that write succeeds or fails (and is
// retried by the next flush).
func TestSetFlagWinsOverRacingFlush(t *testing.T) {
	const alice = "sip:alice@example.com"
	set := func(tr *Tracker) error { return tr.SetFlag(context.Background(), alice, true) }
	unset := func(tr *Tracker) error { return tr.ClearFlag(context.Background(), alice) }
	locked := errors.New("database is locked")
	for _, tc := range []struct {
		name   string
		fail   error
		api    func(*Tracker) error
		stored bool // whether a flag (on) must be stored
	}{
		{"set", nil, set, true},
		{"set, flush fails", locked, set, true},
		{"clear", nil, unset, false},
		{"clear, flush fails", locked, unset, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			st := &gateStore{memStore: newMemStore(), held: false, fail: tc.fail,
				entered: make(chan struct{}), release: make(chan struct{})}
			r := newRig(t, DefaultConfig(), nil, nil)
			tr, err := New(DefaultConfig(), Options{Publisher: r.pub, Store: st, Clock: r.clock})
			if err != nil {
				t.Fatal(err)
			}
			off := false
			if err := tr.ApplyRegistration(ctx, event.Registration{AoR: alice, Publish: &off,
				Contacts: []event.Contact{{URI: "sip:alice@10.0.0.1", Expires: 600, Q: -1}}}); err != nil {
				t.Fatal(err)
			}
			flushed := make(chan error, 1)
			go func() { flushed <- tr.Flush(ctx) }()
			<-st.entered
			apiDone := make(chan error, 1)
			go func() { apiDone <- tc.api(tr) }()
			select { // a call that does not wait for the flush ends first
			case err := <-apiDone:
				apiDone <- err
			case <-time.After(200 * time.Millisecond):
			}
			close(st.release)
			if err := <-flushed; (err != nil) != (tc.fail != nil) {
				t.Fatalf("flush: %v", err)
			}
			if err := <-apiDone; err != nil {
				t.Fatal(err)
			}
			if err := tr.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			v, stored := st.flags.Get(alice)
			if stored != tc.stored || (stored && !v) {
				t.Fatalf("stored flag: %v (stored %v), want on %v", v, stored, tc.stored)
			}
			if f, ok := tr.Flags()[alice]; ok != stored || f != v {
				t.Fatalf("flag in memory %v (%v), stored %v (%v)", f, ok, v, stored)
			}
			if in, _ := tr.Registration(alice); !in.Publish || in.State != "open" {
				t.Fatalf("after the API call: %+v", in)
			}
		})
	}
}
