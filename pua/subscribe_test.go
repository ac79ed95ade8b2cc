package pua

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/internal/puatest"
)

var slaKey = SubKey{PresURI: "sip:line1@example.com", WatcherURI: "sip:line1@example.com", Event: "dialog;sla", ID: "phone1"}

func slaReq() SubscribeRequest {
	return SubscribeRequest{SubKey: slaKey, Target: "sip:line1@10.0.0.9:5062", Expires: 120 * time.Second, Flag: FlagBLASubscribe}
}

// notifyLog records what the owner's handler saw.
type notifyLog struct {
	mu   sync.Mutex
	seen []Notify
	code int
}

func (l *notifyLog) handler(ctx context.Context, n Notify) (int, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen = append(l.seen, n)
	if l.code != 0 {
		return l.code, "Conflict"
	}
	return 200, "OK"
}

func (l *notifyLog) all() []Notify {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Notify(nil), l.seen...)
}

// subEngine starts an engine whose SUBSCRIBEs go to fs (outbound proxy).
func subEngine(t *testing.T, fs *fakeServer, clk Clock) (*Engine, *notifyLog) {
	e := newTestEngine(t, fs, clk, nil, func(c *Config) { c.OutboundProxy = fs.URI() })
	nl := &notifyLog{}
	e.HandleNotify(FlagBLASubscribe, nl.handler)
	return e, nl
}

func TestSubscribeNotifyBefore2xx(t *testing.T) {
	fs := newFakeServer(t)
	e, nl := subEngine(t, fs, newFakeClock())
	fs.Push(puatest.Reply{Code: 200, Hold: true, Expires: 120})
	done := async(func(ctx context.Context) (Result, error) { return e.SubscribeWait(ctx, slaReq()) })
	waitFor(t, "SUBSCRIBE", nreq(fs))
	sub := fs.Requests()[0]
	if sub.Method != sip.SUBSCRIBE || sub.Recipient.String() != "sip:line1@10.0.0.9:5062" ||
		sub.To().Address.String() != slaKey.PresURI || sub.From().Address.String() != slaKey.WatcherURI ||
		headerValue(sub, "Event") != "dialog;sla" || headerValue(sub, "Expires") != "120" ||
		sub.Contact() == nil || sub.Contact().Address.String() != e.ContactURI() {
		t.Fatalf("SUBSCRIBE on the wire:\n%s", sub.String())
	}
	if tag, _ := sub.To().Params.Get("tag"); tag != "" {
		t.Fatalf("initial SUBSCRIBE with To tag %q", tag)
	}
	body := []byte(`<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="0" state="full" entity="sip:line1@example.com"/>`)
	if code := notify(t, fs, sub, "nt1", "active;expires=120", "application/dialog-info+xml", body); code != 200 {
		t.Fatalf("NOTIFY before 2xx answered %d", code)
	}
	fs.Release()
	res := <-done
	if res.Status != 200 {
		t.Fatalf("result %+v", res)
	}
	seen := nl.all()
	if len(seen) != 1 || seen[0].State != "active" || seen[0].Expires != 120 || string(seen[0].Body) != string(body) ||
		seen[0].ContentType != "application/dialog-info+xml" || seen[0].Key != slaKey {
		t.Fatalf("handler saw %+v", seen)
	}
	info := e.Subscriptions()
	if len(info) != 1 || info[0].RemoteTag != "nt1" || info[0].State != StateActive || string(info[0].LastNotifyDoc) != string(body) {
		t.Fatalf("subscriptions %+v", info)
	}
	// The owner's code is what the notifier gets.
	nl.mu.Lock()
	nl.code = 409
	nl.mu.Unlock()
	if code := notify(t, fs, sub, "nt1", "active;expires=100", "application/dialog-info+xml", body); code != 409 {
		t.Fatalf("NOTIFY answered %d, want the handler's 409", code)
	}
}

func TestNotifyErrors(t *testing.T) {
	fs := newFakeServer(t)
	e, nl := subEngine(t, fs, newFakeClock())
	if res, err := e.SubscribeWait(context.Background(), slaReq()); err != nil || res.Status != 200 {
		t.Fatalf("subscribe: %v %+v", err, res)
	}
	sub := fs.Requests()[0]
	for _, tc := range []struct {
		name  string
		state string
		want  int
	}{
		{"missing state", "", 400},
		{"broken state", "bogus;expires=1", 400},
		{"bad expires", "active;expires=soon", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code := notify(t, fs, sub, "nt1", tc.state, "", nil); code != tc.want {
				t.Fatalf("answered %d, want %d", code, tc.want)
			}
		})
	}
	t.Run("unknown dialog", func(t *testing.T) {
		other := sub.Clone()
		cid := sip.CallIDHeader("no-such-call")
		other.ReplaceHeader(&cid)
		if code := notify(t, fs, other, "nt1", "active", "", nil); code != 481 {
			t.Fatalf("answered %d, want 481", code)
		}
	})
	if n := len(nl.all()); n != 0 {
		t.Fatalf("handler called %d times for bad NOTIFYs", n)
	}
}

func TestSubscribeRefreshInDialog(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e, _ := subEngine(t, fs, clk)
	fs.Push(puatest.Reply{Code: 200, Expires: 60})
	if _, err := e.SubscribeWait(context.Background(), slaReq()); err != nil {
		t.Fatal(err)
	}
	first := fs.Requests()[0]
	var toTag string
	// The 2xx To tag is the fake's response tag: read it from the engine.
	info := e.Subscriptions()[0]
	toTag = info.RemoteTag
	if toTag == "" {
		t.Fatal("no remote tag after 2xx")
	}
	fs.Push(puatest.Reply{Code: 200, Expires: 60})
	clk.Advance(55 * time.Second)
	waitFor(t, "refresh", countIs(fs, 2))
	ref := fs.Requests()[1]
	if ref.CallID().Value() != first.CallID().Value() {
		t.Fatalf("refresh Call-ID %s, want %s", ref.CallID().Value(), first.CallID().Value())
	}
	if ref.CSeq().SeqNo != first.CSeq().SeqNo+1 {
		t.Fatalf("refresh CSeq %d after %d", ref.CSeq().SeqNo, first.CSeq().SeqNo)
	}
	ft, _ := first.From().Params.Get("tag")
	rt, _ := ref.From().Params.Get("tag")
	tt, _ := ref.To().Params.Get("tag")
	if ft != rt || tt != toTag {
		t.Fatalf("tags from %s/%s to %s/%s", ft, rt, tt, toTag)
	}
	// R-URI is the remote target from the 2xx Contact.
	if got := ref.Recipient.String(); got != "sip:notifier@127.0.0.1:"+strconv.Itoa(fs.Port()) {
		t.Fatalf("refresh R-URI %s", got)
	}

	// 481 on the next refresh: a new initial SUBSCRIBE after a backoff.
	fs.Push(puatest.Reply{Code: 481})
	clk.Advance(55 * time.Second)
	waitFor(t, "refresh answered 481", func() bool {
		s, _ := e.Subscription(slaKey)
		return s.State == StateRetrying
	})
	clk.Advance(e.cfg.RetryMax)
	waitFor(t, "new initial", countIs(fs, 4))
	ini := fs.Requests()[3]
	if tag, _ := ini.To().Params.Get("tag"); tag != "" || ini.CallID().Value() == first.CallID().Value() ||
		ini.Recipient.String() != "sip:line1@10.0.0.9:5062" {
		t.Fatalf("not a new initial SUBSCRIBE:\n%s", ini.String())
	}
	waitFor(t, "active again", func() bool { s, _ := e.Subscription(slaKey); return s.State == StateActive })

	// Unsubscribe: in-dialog, Expires 0.
	if err := e.Unsubscribe(slaKey); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "unsubscribe", countIs(fs, 5))
	un := fs.Requests()[4]
	if headerValue(un, "Expires") != "0" || un.CallID().Value() != ini.CallID().Value() || un.CSeq().SeqNo != ini.CSeq().SeqNo+1 {
		t.Fatalf("unsubscribe:\n%s", un.String())
	}
	waitFor(t, "record gone", func() bool { return len(e.Subscriptions()) == 0 })
}

func TestNotifyTerminatedDropsSubscription(t *testing.T) {
	fs := newFakeServer(t)
	e, nl := subEngine(t, fs, newFakeClock())
	if _, err := e.SubscribeWait(context.Background(), slaReq()); err != nil {
		t.Fatal(err)
	}
	sub := fs.Requests()[0]
	tag := e.Subscriptions()[0].RemoteTag
	if code := notify(t, fs, sub, tag, "terminated;reason=noresource", "", nil); code != 200 {
		t.Fatalf("answered %d", code)
	}
	seen := nl.all()
	if len(seen) != 1 || seen[0].State != "terminated" || seen[0].Reason != "noresource" {
		t.Fatalf("handler saw %+v", seen)
	}
	if len(e.Subscriptions()) != 0 {
		t.Fatal("subscription kept after terminated")
	}
	if code := notify(t, fs, sub, tag, "active", "", nil); code != 481 {
		t.Fatalf("NOTIFY after termination answered %d", code)
	}
}

func TestOtherMethods405(t *testing.T) {
	fs := newFakeServer(t)
	e := newTestEngine(t, fs, newFakeClock(), nil, nil)
	var u sip.Uri
	if err := sip.ParseUri(e.ContactURI(), &u); err != nil {
		t.Fatal(err)
	}
	req := sip.NewRequest(sip.OPTIONS, u)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := fs.Client().Do(ctx, req)
	if err != nil || res.StatusCode != 405 {
		t.Fatalf("OPTIONS: %v %v", err, res)
	}
}

func TestSubscriptionSurvivesRestart(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	e1 := newTestEngine(t, fs, clk, st, func(c *Config) { c.OutboundProxy = fs.URI() })
	if _, err := e1.SubscribeWait(context.Background(), slaReq()); err != nil {
		t.Fatal(err)
	}
	tag := e1.Subscriptions()[0].RemoteTag
	if err := e1.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	e2 := newTestEngine(t, fs, clk, st, func(c *Config) { c.OutboundProxy = fs.URI() })
	waitFor(t, "refresh after restart", countIs(fs, 2))
	first, ref := fs.Requests()[0], fs.Requests()[1]
	tt, _ := ref.To().Params.Get("tag")
	if ref.CallID().Value() != first.CallID().Value() || ref.CSeq().SeqNo != first.CSeq().SeqNo+1 || tt != tag {
		t.Fatalf("not an in-dialog refresh:\n%s", ref.String())
	}
	// NOTIFYs of the restored dialog are still matched.
	nl := &notifyLog{}
	e2.HandleNotify(FlagBLASubscribe, nl.handler)
	if code := notify(t, fs, ref, tag, "active;expires=60", "", nil); code != 200 || len(nl.all()) != 1 {
		t.Fatalf("NOTIFY after restart answered %d", code)
	}
}

func TestSubscribeContactOverride(t *testing.T) {
	fs := newFakeServer(t)
	e, _ := subEngine(t, fs, newFakeClock())
	fs.Push(puatest.Reply{Code: 200, Expires: 120})
	req := slaReq()
	req.Contact = "sip:line1@127.0.0.1:5999"
	if _, err := e.SubscribeWait(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	sub := fs.Requests()[0]
	if cs := sub.GetHeaders("Contact"); len(cs) != 1 || sub.Contact().Address.String() != req.Contact {
		t.Fatalf("want one Contact %s:\n%s", req.Contact, sub.String())
	}
}

// TestRestoredSubscriptionKeepsItsTarget: a subscription restored after a
// restart carries on in its dialog (Request-URI the notifier's Contact)
// and, once that dialog is lost, subscribes anew where the live one would:
// to its owner's target, or to the presentity at the presence server when
// it has none, not to the old notifier's Contact.
func TestRestoredSubscriptionKeepsItsTarget(t *testing.T) {
	presence := SubscribeRequest{SubKey: SubKey{PresURI: alice, WatcherURI: "sip:watcher@example.com", Event: "presence", ID: "rpc"},
		Flag: FlagRPCSubscribe}
	for _, tc := range []struct {
		name     string
		req      SubscribeRequest
		proxy    bool   // SUBSCRIBEs through an outbound proxy (the phone's address is not reachable here)
		wantRURI string // of the new initial SUBSCRIBE
	}{
		{"presentity", presence, false, alice},
		{"phone", slaReq(), true, slaReq().Target},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFakeServer(t)
			clk := newFakeClock()
			st := newMemStore()
			mod := func(c *Config) {
				if tc.proxy {
					c.OutboundProxy = fs.URI()
				}
			}
			e1 := newTestEngine(t, fs, clk, st, mod)
			if res, err := e1.SubscribeWait(context.Background(), tc.req); err != nil || res.Status != 200 {
				t.Fatalf("subscribe: %v %+v", err, res)
			}
			if err := e1.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			first := fs.Requests()[0]
			fs.Push(puatest.Reply{Code: 481}) // the refresh after the restart: the dialog is lost
			e2 := newTestEngine(t, fs, clk, st, mod)
			waitFor(t, "refresh after restart", countIs(fs, 2))
			ref := fs.Requests()[1]
			contact := "sip:notifier@127.0.0.1:" + strconv.Itoa(fs.Port())
			if ref.CallID().Value() != first.CallID().Value() || ref.Recipient.String() != contact {
				t.Fatalf("not an in-dialog refresh to the notifier's Contact:\n%s", ref)
			}
			if s, _ := e2.Subscription(tc.req.SubKey); s.Target != tc.req.Target {
				t.Fatalf("restored target %q, want %q", s.Target, tc.req.Target)
			}
			waitFor(t, "dialog lost", func() bool { s, _ := e2.Subscription(tc.req.SubKey); return s.State == StateRetrying })
			clk.Advance(e2.cfg.RetryMax)
			waitFor(t, "new initial SUBSCRIBE", countIs(fs, 3))
			ini := fs.Requests()[2]
			if tag, _ := ini.To().Params.Get("tag"); tag != "" || ini.CallID().Value() == first.CallID().Value() ||
				ini.Recipient.String() != tc.wantRURI {
				t.Fatalf("new initial SUBSCRIBE, want Request-URI %s:\n%s", tc.wantRURI, ini)
			}
		})
	}
}

// TestRestoredSubscriptionWithoutTarget: a row written without its target
// (Kamailio's, or an earlier version's) is restored with the notifier's
// Contact in its place, as before, and written back still without one
// until the owner gives it again.
func TestRestoredSubscriptionWithoutTarget(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	contact := "sip:notifier@127.0.0.1:" + strconv.Itoa(fs.Port())
	row := Record{PresURI: alice, WatcherURI: "sip:watcher@example.com", PresID: "rpc", EventName: "presence",
		Flag: FlagRPCSubscribe, CallID: "c1", FromTag: "f1", ToTag: "t1", CSeq: 3, RemoteContact: contact,
		Expires: clk.Now().Add(time.Hour).Unix()}
	st.put(row)
	e := newTestEngine(t, fs, clk, st, nil)
	key := SubKey{PresURI: alice, WatcherURI: row.WatcherURI, Event: "presence", ID: "rpc"}
	if s, _ := e.Subscription(key); s.Target != contact {
		t.Fatalf("restored target %q, want the notifier's Contact %q", s.Target, contact)
	}
	stored := func() Record {
		r, _ := st.rows.Get(identity{presURI: alice, presID: "rpc", event: "presence", flag: FlagRPCSubscribe, watcher: row.WatcherURI})
		return r
	}
	waitFor(t, "refreshed", func() bool { s, _ := e.Subscription(key); return s.LastStatus == 200 })
	clk.Advance(e.cfg.UpdatePeriod)
	waitFor(t, "written behind", func() bool { return stored().CSeq == 4 })
	if got := stored().Target; got != "" {
		t.Fatalf("stored target %q, want none (not known)", got)
	}
	if res, err := e.SubscribeWait(context.Background(), SubscribeRequest{SubKey: key, Flag: FlagRPCSubscribe}); err != nil || res.Status != 200 {
		t.Fatalf("subscribe: %v %+v", err, res)
	}
	clk.Advance(e.cfg.UpdatePeriod)
	waitFor(t, "target stored", func() bool { return stored().Target == alice })
}
