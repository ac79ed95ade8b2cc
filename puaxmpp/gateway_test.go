package puaxmpp

import (
	"context"
	"encoding/xml"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/puaside/puaside/clock"
	"github.com/puaside/puaside/clock/clocktest"
	"github.com/puaside/puaside/pua"
)

// fakeEngine records what the gateway asks of the pua engine.
type fakeEngine struct {
	mu     sync.Mutex
	pubs   []pua.PublishRequest
	rems   []pua.Key
	subs   []pua.SubscribeRequest
	unsubs []pua.SubKey
	known  map[pua.SubKey]pua.SubscriptionInfo
}

func (f *fakeEngine) Publish(r pua.PublishRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pubs = append(f.pubs, r)
	return nil
}
func (f *fakeEngine) Remove(k pua.Key) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rems = append(f.rems, k)
	return nil
}
func (f *fakeEngine) Subscribe(r pua.SubscribeRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.subs = append(f.subs, r)
	return nil
}
func (f *fakeEngine) Unsubscribe(k pua.SubKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unsubs = append(f.unsubs, k)
	return nil
}
func (f *fakeEngine) Refresh(pua.SubKey) error { return nil }
func (f *fakeEngine) Subscription(k pua.SubKey) (pua.SubscriptionInfo, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.known[k]
	return s, ok
}
func (f *fakeEngine) Subscriptions() []pua.SubscriptionInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []pua.SubscriptionInfo
	for _, s := range f.known {
		out = append(out, s)
	}
	return out
}

// fakeClaimer records the gateway's claims at start.
type fakeClaimer struct {
	claimed    []pua.Key
	claimedSub []pua.SubKey
	done       []int
	pubs       []pua.PublicationInfo
}

func (c *fakeClaimer) Claim(k pua.Key) bool { c.claimed = append(c.claimed, k); return true }
func (c *fakeClaimer) ClaimSubscription(k pua.SubKey) bool {
	c.claimedSub = append(c.claimedSub, k)
	return true
}
func (c *fakeClaimer) ClaimsDone(flag int)                 { c.done = append(c.done, flag) }
func (c *fakeClaimer) Publications() []pua.PublicationInfo { return c.pubs }

func (f *fakeEngine) lastPub(t *testing.T) pua.PublishRequest {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.pubs) == 0 {
		t.Fatal("nothing published")
	}
	return f.pubs[len(f.pubs)-1]
}

// testGateway is a gateway on a fake engine whose sent stanzas are kept.
type testGateway struct {
	*Gateway
	eng  *fakeEngine
	mu   sync.Mutex
	sent []outPresence
}

func newTestGateway(t *testing.T) *testGateway {
	t.Helper()
	return newTestGatewayClock(t, nil)
}

func newTestGatewayClock(t *testing.T, clk clock.Clock) *testGateway {
	t.Helper()
	c := DefaultConfig()
	c.XMPPDomain = "sip.xmpp.localhost"
	c.XMPPPassword = "s"
	c.GWMap = map[string]string{"example.com": "sip.xmpp.localhost"}
	c.MaxResources = 2
	eng := &fakeEngine{known: map[pua.SubKey]pua.SubscriptionInfo{}}
	g, err := New(c, Options{Publisher: eng, Subscriber: eng, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	tg := &testGateway{Gateway: g, eng: eng}
	tg.connect()
	return tg
}

func (tg *testGateway) connect() {
	tg.Gateway.mu.Lock()
	tg.out = func(_ context.Context, o outPresence) error {
		tg.mu.Lock()
		defer tg.mu.Unlock()
		tg.sent = append(tg.sent, o)
		return nil
	}
	tg.Gateway.mu.Unlock()
}

func (tg *testGateway) disconnect() {
	tg.Gateway.mu.Lock()
	tg.out = nil
	tg.Gateway.mu.Unlock()
}

func (tg *testGateway) sentOf(typ string) []outPresence {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	var out []outPresence
	for _, o := range tg.sent {
		if o.Type == typ {
			out = append(out, o)
		}
	}
	return out
}

// stanza feeds raw XML to the gateway as the session would.
func (tg *testGateway) stanza(t *testing.T, raw string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(raw))
	tok, err := d.Token()
	if err != nil {
		t.Fatal(err)
	}
	st := tok.(xml.StartElement)
	tg.handleStanza(context.Background(), d, &st)
}

func TestGatewayComposesResources(t *testing.T) {
	tg := newTestGateway(t)
	tg.stanza(t, `<presence from='bob@xmpp.localhost/phone' to='alice@sip.xmpp.localhost'><show>away</show><status>lunch</status></presence>`)
	p := tg.eng.lastPub(t)
	if p.Key != (pua.Key{PresURI: "sip:bob@xmpp.localhost", Event: "presence", ID: PresID}) || p.Flag != pua.FlagXMPPPublish ||
		!strings.Contains(string(p.Body), "<rpid:away/>") || !strings.Contains(string(p.Body), "lunch") {
		t.Fatalf("published %+v\n%s", p, p.Body)
	}
	tg.stanza(t, `<presence from='bob@xmpp.localhost/laptop' to='alice@sip.xmpp.localhost'/>`)
	if b := string(tg.eng.lastPub(t).Body); !strings.Contains(b, "/phone") || !strings.Contains(b, "/laptop") {
		t.Fatalf("two resources:\n%s", b)
	}
	n := len(tg.eng.pubs)
	tg.stanza(t, `<presence from='bob@xmpp.localhost/third' to='alice@sip.xmpp.localhost'/>`)
	if len(tg.eng.pubs) != n {
		t.Fatal("a resource beyond max_resources was published")
	}
	tg.stanza(t, `<presence type='unavailable' from='bob@xmpp.localhost/phone' to='alice@sip.xmpp.localhost'/>`)
	if b := string(tg.eng.lastPub(t).Body); strings.Contains(b, "/phone") || !strings.Contains(b, "<basic>open</basic>") {
		t.Fatalf("after the phone left:\n%s", b)
	}
	tg.stanza(t, `<presence type='unavailable' from='bob@xmpp.localhost/laptop' to='alice@sip.xmpp.localhost'/>`)
	last := tg.eng.lastPub(t)
	if !strings.Contains(string(last.Body), "<basic>closed</basic>") || last.Lifetime != tg.cfg.ClosedLinger {
		t.Fatalf("last resource gone: %+v\n%s", last, last.Body)
	}
	winfo := 0
	for _, s := range tg.eng.subs {
		if s.Event == "presence.winfo" && s.Flag == pua.FlagXMPPWinfo && s.PresURI == "sip:bob@xmpp.localhost" {
			winfo++
		}
	}
	if winfo != 1 {
		t.Fatalf("%d winfo subscriptions, want 1", winfo)
	}
	// The user is kept (offline) with the contact it may be probed from.
	if tg.Users() != 1 {
		t.Fatalf("%d users held, want 1", tg.Users())
	}
}

func TestGatewaySubscriptionsBothWays(t *testing.T) {
	tg := newTestGateway(t)
	ctx := context.Background()
	tg.stanza(t, `<presence type='subscribe' from='bob@xmpp.localhost' to='alice@sip.xmpp.localhost'/>`)
	key := pua.SubKey{PresURI: "sip:alice@example.com", WatcherURI: "sip:bob@xmpp.localhost", Event: "presence", ID: PresID}
	if len(tg.eng.subs) == 0 || tg.eng.subs[0].SubKey != key || tg.eng.subs[0].Flag != pua.FlagXMPPSubscribe {
		t.Fatalf("subscribe: %+v", tg.eng.subs)
	}
	// An unmapped SIP user: an error back, no subscription.
	n := len(tg.eng.subs)
	tg.stanza(t, `<presence type='subscribe' from='bob@xmpp.localhost' to='nobody@elsewhere.org'/>`)
	tg.stanza(t, `<presence type='subscribe' from='bob@xmpp.localhost' to='@sip.xmpp.localhost'/>`)
	if len(tg.eng.subs) != n {
		t.Fatal("a subscription for a bad address")
	}

	body := []byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com"><tuple id="a"><status><basic>open</basic></status></tuple></presence>`)
	for i := 0; i < 2; i++ {
		if code, _ := tg.HandleNotify(ctx, pua.Notify{Key: key, State: "active", Body: body}); code != 200 {
			t.Fatalf("notify answered %d", code)
		}
	}
	if s := tg.sentOf("subscribed"); len(s) != 1 || s[0].From != "alice@sip.xmpp.localhost" || s[0].To != "bob@xmpp.localhost" {
		t.Fatalf("subscribed sent %+v, want once", s)
	}
	if a := tg.sentOf(""); len(a) != 2 {
		t.Fatalf("available sent %d times, want 2", len(a))
	}
	tg.HandleNotify(ctx, pua.Notify{Key: key, State: "terminated", Reason: "timeout"})
	if last := tg.eng.subs[len(tg.eng.subs)-1]; last.SubKey != key {
		t.Fatalf("not subscribed again after a timeout: %+v", last)
	}
	tg.HandleNotify(ctx, pua.Notify{Key: key, State: "terminated", Reason: "rejected"})
	if len(tg.sentOf("unsubscribed")) != 1 || len(tg.sentOf("unavailable")) != 2 {
		t.Fatalf("terminated: %+v", tg.sent)
	}
	// Refused for good: the dialog subscription goes with it.
	if len(tg.eng.unsubs) != 1 || tg.eng.unsubs[0] != dialogKey(key) {
		t.Fatalf("dialog subscription kept after a refusal: %+v", tg.eng.unsubs)
	}
	tg.stanza(t, `<presence type='unsubscribe' from='bob@xmpp.localhost' to='alice@sip.xmpp.localhost'/>`)
	if len(tg.eng.unsubs) != 2 || tg.eng.unsubs[1] != key {
		t.Fatalf("unsubscribe: %+v", tg.eng.unsubs)
	}
	// A probe without a SIP subscription makes one (the XMPP server
	// probes only contacts its user is subscribed to); with one, it is
	// answered with the last NOTIFY's state.
	ck := pua.SubKey{PresURI: "sip:alice@example.com", WatcherURI: "sip:carol@xmpp.localhost", Event: "presence", ID: PresID}
	tg.stanza(t, `<presence type='probe' from='carol@xmpp.localhost' to='alice@sip.xmpp.localhost'/>`)
	if s := tg.eng.subs[len(tg.eng.subs)-2:]; s[0].SubKey != ck || s[0].Flag != pua.FlagXMPPSubscribe || s[1].SubKey != dialogKey(ck) {
		t.Fatalf("probe without subscription: %+v", s)
	}
	tg.eng.known[ck] = pua.SubscriptionInfo{Key: ck, State: pua.StateActive, LastNotify: time.Now(), LastNotifyDoc: body}
	before := len(tg.sentOf(""))
	tg.stanza(t, `<presence type='probe' from='carol@xmpp.localhost' to='alice@sip.xmpp.localhost'/>`)
	if len(tg.sentOf("")) != before+1 {
		t.Fatalf("probe not answered with the state: %+v", tg.sent)
	}
}

func TestGatewayWatchers(t *testing.T) {
	tg := newTestGateway(t)
	ctx := context.Background()
	winfo := []byte(`<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="0" state="full">
	<watcher-list resource="sip:bob@xmpp.localhost" package="presence">
	<watcher status="pending" id="1">sip:dave@example.com</watcher>
	<watcher status="active" id="2">sip:mallory@unmapped.org</watcher></watcher-list></watcherinfo>`)
	wk := pua.SubKey{PresURI: "sip:bob@xmpp.localhost", WatcherURI: "sip:bob@xmpp.localhost", Event: "presence.winfo", ID: PresID}
	for i := 0; i < 3; i++ {
		tg.HandleWinfoNotify(ctx, pua.Notify{Key: wk, State: "active", Body: winfo})
	}
	if s := tg.sentOf("subscribe"); len(s) != 1 || s[0].From != "dave@sip.xmpp.localhost" || s[0].To != "bob@xmpp.localhost" {
		t.Fatalf("subscription requests %+v, want one from dave", s)
	}
	if err := tg.WatcherAdded(ctx, "sip:bob@xmpp.localhost", "sip:x@unmapped.org"); !errors.Is(err, ErrUnmapped) {
		t.Fatalf("unmapped watcher: %v", err)
	}
	if err := tg.WatcherAdded(ctx, "sip:alice@example.com", "sip:dave@example.com"); !errors.Is(err, ErrUnmapped) {
		t.Fatalf("a SIP user as the presentity: %v", err)
	}
	if err := tg.WatcherRemoved(ctx, "sip:bob@xmpp.localhost", "sip:dave@example.com"); err != nil || len(tg.sentOf("unsubscribe")) != 1 {
		t.Fatalf("removed: %v %+v", err, tg.sent)
	}
	// Disconnected: refused, not remembered, asked once connected.
	tg.disconnect()
	if err := tg.WatcherAdded(ctx, "sip:bob@xmpp.localhost", "sip:erin@example.com"); !errors.Is(err, errNotConnected) {
		t.Fatalf("disconnected: %v", err)
	}
	tg.connect()
	if err := tg.WatcherAdded(ctx, "sip:bob@xmpp.localhost", "sip:erin@example.com"); err != nil || len(tg.sentOf("subscribe")) != 2 {
		t.Fatalf("after reconnect: %v %+v", err, tg.sent)
	}
	// The XMPP user's approval: a probe follows.
	tg.stanza(t, `<presence type='subscribed' from='bob@xmpp.localhost' to='erin@sip.xmpp.localhost'/>`)
	if p := tg.sentOf("probe"); len(p) != 1 || p[0].From != "erin@sip.xmpp.localhost" {
		t.Fatalf("probe after approval: %+v", p)
	}
}

func TestGatewayIgnoresHostileStanzas(t *testing.T) {
	tg := newTestGateway(t)
	for _, raw := range []string{
		`<presence from='bob@xmpp.localhost/p' to='alice@sip.xmpp.localhost'>` + strings.Repeat("<a>", 64) + strings.Repeat("</a>", 64) + `</presence>`,
		`<presence from='bob@xmpp.localhost/p' to='alice@sip.xmpp.localhost'><status>` + strings.Repeat("x", 70000) + `</status></presence>`,
		`<presence from='bob@xmpp.localhost/p' to='alice@sip.xmpp.localhost' type='bogus'/>`,
		`<presence from='bob@sip.xmpp.localhost/p' to='alice@sip.xmpp.localhost'/>`,
		`<presence from='bob@xmpp.localhost/p' to='alice@other.domain'/>`,
		`<unknown from='bob@xmpp.localhost'/>`,
		`<message from='bob@xmpp.localhost' to='alice@sip.xmpp.localhost'><body>hi</body></message>`,
	} {
		tg.stanza(t, raw)
	}
	if len(tg.eng.pubs) != 0 || len(tg.eng.subs) != 0 {
		t.Fatalf("hostile stanzas acted on: %+v %+v", tg.eng.pubs, tg.eng.subs)
	}
}

// TestGatewayResync: after a reconnection every known user is probed from
// its contacts; one that answers keeps its state, one that does not is
// published offline after ResyncGrace.
func TestGatewayResync(t *testing.T) {
	clk := clocktest.New(time.Unix(1_700_000_000, 0))
	tg := newTestGatewayClock(t, clk)
	tg.stanza(t, `<presence from='bob@xmpp.localhost/phone' to='alice@sip.xmpp.localhost'/>`)
	tg.stanza(t, `<presence from='carol@xmpp.localhost/desk' to='alice@sip.xmpp.localhost'/>`)
	tg.resync(context.Background())
	probes := map[string]string{}
	for _, p := range tg.sentOf("probe") {
		probes[p.To] = p.From
	}
	if probes["bob@xmpp.localhost"] != "alice@sip.xmpp.localhost" || probes["carol@xmpp.localhost"] != "alice@sip.xmpp.localhost" {
		t.Fatalf("probes %+v", probes)
	}
	// bob answers (his server sends his presence again), carol does not.
	tg.stanza(t, `<presence from='bob@xmpp.localhost/phone' to='alice@sip.xmpp.localhost'><show>away</show></presence>`)
	n := len(tg.eng.pubs)
	clk.Advance(ResyncGrace)
	tg.eng.mu.Lock()
	defer tg.eng.mu.Unlock()
	if len(tg.eng.pubs) != n+1 {
		t.Fatalf("%d publications after the grace, want one more", len(tg.eng.pubs)-n)
	}
	last := tg.eng.pubs[len(tg.eng.pubs)-1]
	if last.PresURI != "sip:carol@xmpp.localhost" || !strings.Contains(string(last.Body), "<basic>closed</basic>") {
		t.Fatalf("after the grace: %+v\n%s", last, last.Body)
	}
}

// TestGatewayStartClaims: at start the gateway claims its stored
// subscriptions and publications (and nothing else) and says it is done
// for its three flags; a stored active subscription is not told
// "subscribed" again, and a terminated NOTIFY of it subscribes again.
func TestGatewayStartClaims(t *testing.T) {
	tg := newTestGateway(t)
	sk := pua.SubKey{PresURI: "sip:alice@example.com", WatcherURI: "sip:bob@xmpp.localhost", Event: "presence", ID: PresID}
	wk := pua.SubKey{PresURI: "sip:bob@xmpp.localhost", WatcherURI: "sip:bob@xmpp.localhost", Event: "presence.winfo", ID: PresID}
	other := pua.SubKey{PresURI: "sip:x@example.com", WatcherURI: "sip:y@example.com", Event: "dialog;sla", ID: "bla"}
	tg.eng.known[sk] = pua.SubscriptionInfo{Key: sk, Flag: pua.FlagXMPPSubscribe, State: pua.StateActive}
	tg.eng.known[wk] = pua.SubscriptionInfo{Key: wk, Flag: pua.FlagXMPPWinfo, State: pua.StateActive}
	tg.eng.known[other] = pua.SubscriptionInfo{Key: other, Flag: pua.FlagBLASubscribe}
	cl := &fakeClaimer{pubs: []pua.PublicationInfo{
		{Key: pua.Key{PresURI: "sip:bob@xmpp.localhost", Event: "presence", ID: PresID}, Flag: pua.FlagXMPPPublish},
		{Key: pua.Key{PresURI: "sip:z@example.com", Event: "presence", ID: "usrloc"}, Flag: pua.FlagUsrloc},
	}}
	tg.Start(context.Background(), cl)
	if len(cl.claimedSub) != 2 || len(cl.claimed) != 1 || cl.claimed[0].PresURI != "sip:bob@xmpp.localhost" {
		t.Fatalf("claimed %+v %+v", cl.claimedSub, cl.claimed)
	}
	if len(cl.done) != 3 {
		t.Fatalf("claims done for %v", cl.done)
	}
	// A presence subscription of an earlier run gets its call state one.
	if len(tg.eng.subs) != 1 || tg.eng.subs[0].SubKey != dialogKey(sk) {
		t.Fatalf("after start subscribed %+v, want the dialog one", tg.eng.subs)
	}
	body := []byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com"><tuple id="a"><status><basic>open</basic></status></tuple></presence>`)
	tg.HandleNotify(context.Background(), pua.Notify{Key: sk, State: "active", Body: body})
	if len(tg.sentOf("subscribed")) != 0 {
		t.Fatal("subscribed sent again after a restart")
	}
	n := len(tg.eng.subs)
	tg.HandleNotify(context.Background(), pua.Notify{Key: sk, State: "terminated", Reason: "timeout"})
	if len(tg.eng.subs) != n+1 {
		t.Fatal("a restored subscription was not renewed after a timeout")
	}
}

// memRequests is a RequestStore in memory.
type memRequests struct {
	mu sync.Mutex
	m  map[Request]bool
}

func (s *memRequests) LoadXMPPRequests(context.Context) ([]Request, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Request
	for r := range s.m {
		out = append(out, r)
	}
	return out, nil
}
func (s *memRequests) SaveXMPPRequest(_ context.Context, r Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[r] = true
	return nil
}
func (s *memRequests) DeleteXMPPRequest(_ context.Context, r Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, r)
	return nil
}

// TestGatewayRequestsSurviveRestart: a subscription request sent before a
// restart is not sent again after it; one withdrawn is forgotten.
func TestGatewayRequestsSurviveRestart(t *testing.T) {
	ctx := context.Background()
	st := &memRequests{m: map[Request]bool{}}
	first := newTestGateway(t)
	first.opts.Store = st
	if err := first.WatcherAdded(ctx, "sip:bob@xmpp.localhost", "sip:dave@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := first.WatcherAdded(ctx, "sip:bob@xmpp.localhost", "sip:erin@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := first.WatcherRemoved(ctx, "sip:bob@xmpp.localhost", "sip:erin@example.com"); err != nil {
		t.Fatal(err)
	}
	if len(st.m) != 1 || !st.m[Request{XMPPUser: "bob@xmpp.localhost", Watcher: "sip:dave@example.com"}] {
		t.Fatalf("stored %v", st.m)
	}
	second := newTestGateway(t)
	second.opts.Store = st
	if err := second.Start(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"sip:dave@example.com", "sip:erin@example.com"} {
		if err := second.WatcherAdded(ctx, "sip:bob@xmpp.localhost", w); err != nil {
			t.Fatal(err)
		}
	}
	if s := second.sentOf("subscribe"); len(s) != 1 || s[0].From != "erin@sip.xmpp.localhost" {
		t.Fatalf("after the restart: %+v, want erin asked only", s)
	}
}
