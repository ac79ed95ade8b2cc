package e2e

import (
	"context"
	"encoding/xml"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/internal/prosodytest"
	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/pa"
	"github.com/puaside/puaside/pua"
	"github.com/puaside/puaside/puaxmpp"
)

// The XMPP gateway's tests run prosody (users in xmpp.localhost, the
// gateway as component sip.xmpp.localhost), Kamailio's presence server
// and puaside. SIP users are in example.com, mapped one to one to the
// component's domain; XMPP users keep their domain in SIP
// (sip:bob@xmpp.localhost).
const (
	xmppDomain = "xmpp.localhost"
	xmppComp   = "sip.xmpp.localhost"
)

// xmppSetup is prosody, the presence server and puaside with the gateway.
type xmppSetup struct {
	prosody  *prosodytest.Server
	presence interface{ Addr() string }
	cfg      config.Config
	ps       *puaside
}

func newXMPPSetup(t *testing.T, usrloc bool, mut ...func(*config.Config)) *xmppSetup {
	t.Helper()
	return newXMPPSetupWith(t, usrloc, false, mut...)
}

// paAddr is the embedded presence server's address as the tests use a
// presence server's.
type paAddr string

func (a paAddr) Addr() string { return string(a) }

// newXMPPSetupWith is newXMPPSetup with Kamailio's presence server, or
// with withPA puaside's own (server_address empty: pa runs, the gateway
// publishes into it and subscribes to it).
func newXMPPSetupWith(t *testing.T, usrloc, withPA bool, mut ...func(*config.Config)) *xmppSetup {
	t.Helper()
	s := &xmppSetup{prosody: prosodytest.Start(t, prosodytest.Options{Domain: xmppDomain, Component: xmppComp, Secret: "s3cret"})}
	if withPA {
		s.cfg = baseConfig(t, nil)
		s.presence = paAddr(hostPort(s.cfg.PA.Listen[0]))
	} else {
		presence := presenceServer(t)
		s.presence = presence
		s.cfg = baseConfig(t, presence)
	}
	s.cfg.Features.Usrloc = usrloc
	s.cfg.Features.Dialoginfo = false
	s.cfg.Features.BLA = false
	s.cfg.Usrloc.MinExpires = time.Second
	x := &s.cfg.Gateway
	x.Enabled = true
	x.XMPPDomain = xmppComp
	x.XMPPHost = s.prosody.ComponentHost()
	x.XMPPPort = s.prosody.ComponentPort()
	x.XMPPPassword = "s3cret"
	x.GWMap = map[string]string{"example.com": xmppComp}
	x.ReconnectMin = 100 * time.Millisecond
	x.ReconnectMax = time.Second
	for _, m := range mut {
		m(&s.cfg)
	}
	s.ps = startPuaside(t, s.cfg)
	eventually(t, "the gateway connected to prosody", func() bool { return s.ps.d.Gateway().Connected() })
	return s
}

// xmppPresence is a presence stanza a test client received.
type xmppPresence struct {
	From   string `xml:"from,attr"`
	Type   string `xml:"type,attr"`
	Show   string `xml:"show"`
	Status string `xml:"status"`
}

// xmppClient is a Jabber user logged in to prosody.
type xmppClient struct {
	t      testing.TB
	signal chan struct{} // a presence arrived
	sess   *xmpp.Session
	mu     sync.Mutex
	got    []xmppPresence
	roster map[string]string // roster pushes: JID → subscription
}

// rosterPush is a roster push (RFC 6121 §2.1.6).
type rosterPush struct {
	Items []struct {
		JID          string `xml:"jid,attr"`
		Subscription string `xml:"subscription,attr"`
	} `xml:"jabber:iq:roster query>item"`
}

func newXMPPClient(t testing.TB, pr *prosodytest.Server, full, pw string) *xmppClient {
	t.Helper()
	// Cancelled when the test ends, not when Dial returns: mellium watches
	// the login context in a goroutine that, seeing it done as the login
	// returns, can set a past deadline on the connection under the first
	// stanzas.
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	sess, err := pr.Dial(ctx, jid.MustParse(full), pw)
	if err != nil {
		t.Fatalf("xmpp login %s: %v", full, err)
	}
	c := &xmppClient{t: t, sess: sess, roster: map[string]string{}, signal: make(chan struct{}, 1)}
	go func() {
		_ = sess.Serve(xmpp.HandlerFunc(func(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
			if start.Name.Local == "iq" {
				var q rosterPush
				if err := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), r)).Decode(&q); err == nil {
					c.mu.Lock()
					for _, it := range q.Items {
						c.roster[it.JID] = it.Subscription
					}
					c.mu.Unlock()
				}
				return nil
			}
			if start.Name.Local != "presence" {
				return nil
			}
			var p xmppPresence
			if err := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), r)).Decode(&p); err != nil {
				return nil
			}
			c.mu.Lock()
			c.got = append(c.got, p)
			c.mu.Unlock()
			select {
			case c.signal <- struct{}{}:
			default:
			}
			return nil
		}))
	}()
	t.Cleanup(func() { _ = sess.Close() })
	return c
}

// send sends raw XML (one stanza) on the client's stream.
func (c *xmppClient) send(raw string) {
	c.t.Helper()
	// A context that is never done: mellium sets a past write deadline
	// from a goroutine once the context is done, which can fail the next
	// send when a per-send context is cancelled right after it returns.
	// The test's own timeouts bound a stuck write.
	if err := c.sess.Send(context.Background(), xml.NewDecoder(strings.NewReader(raw))); err != nil {
		c.t.Fatalf("xmpp send %s: %v", raw, err)
	}
}

// waitPresence waits for a presence stanza matching ok and returns it.
func (c *xmppClient) waitPresence(what string, ok func(xmppPresence) bool) xmppPresence {
	c.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		c.mu.Lock()
		for _, p := range c.got {
			if ok(p) {
				c.mu.Unlock()
				return p
			}
		}
		got := append([]xmppPresence(nil), c.got...)
		c.mu.Unlock()
		left := time.Until(deadline)
		if left <= 0 {
			c.t.Fatalf("xmpp client never got %s; got %+v", what, got)
		}
		select {
		case <-c.signal:
		case <-time.After(left):
		}
	}
}

// subscription is the roster subscription of j as the last roster push said.
func (c *xmppClient) subscription(j string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.roster[j]
}

// count counts the received presence stanzas matching ok.
func (c *xmppClient) count(ok func(xmppPresence) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, p := range c.got {
		if ok(p) {
			n++
		}
	}
	return n
}

// watchXMPPUser subscribes a SIP watcher to sip:user@xmpp.localhost at the
// presence server.
func (s *xmppSetup) watchXMPPUser(ctx context.Context, t *testing.T, ph *sipphone.Phone, user string) *sipphone.Watcher {
	t.Helper()
	w, err := ph.Watch(ctx, s.presence.Addr(), sip.Uri{Scheme: "sip", User: user, Host: xmppDomain}, "presence", sipphone.WatchOptions{Expires: 600})
	if err != nil {
		t.Fatalf("watch %s: %v", user, err)
	}
	return w
}

func waitBody(ctx context.Context, t *testing.T, w *sipphone.Watcher, what string, ok func(string) bool) string {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, waitLimit)
	defer cancel()
	n, err := w.WaitFor(wctx, ok)
	if err != nil {
		var bodies []string
		for _, x := range w.Notifications() {
			bodies = append(bodies, x.Body)
		}
		t.Fatalf("SIP watcher never saw %s: %v; NOTIFY bodies:\n%s", what, err, strings.Join(bodies, "\n----\n"))
	}
	return n.Body
}

// TestXMPPResourcesSeenBySIPWatcher: an XMPP user's presence, per
// resource, reaches a SIP watcher of its SIP address through the gateway
// and Kamailio's presence server: online, away with a status (RPID away
// and the note), a second resource, the first going offline while the
// second stays, then offline (closed).
func TestXMPPResourcesSeenBySIPWatcher(t *testing.T) {
	s := newXMPPSetup(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s.prosody.Register(t, "bob", "pw")
	watcher := sipphone.NewPhone(t, "watcher", "example.com")
	w := s.watchXMPPUser(ctx, t, watcher, "bob")

	phone := newXMPPClient(t, s.prosody, "bob@"+xmppDomain+"/phone", "pw")
	to := "watcher@" + xmppComp
	phoneJID := phone.sess.LocalAddr().String()
	phone.send(`<presence to='` + to + `'/>`)
	waitBody(ctx, t, w, "bob open", func(b string) bool {
		return strings.Contains(b, "<basic>open</basic>") && strings.Contains(b, "xmpp:"+phoneJID)
	})
	phone.send(`<presence to='` + to + `'><show>away</show><status>at lunch</status></presence>`)
	waitBody(ctx, t, w, "bob away at lunch", func(b string) bool {
		return strings.Contains(b, "away") && strings.Contains(b, "at lunch")
	})

	laptop := newXMPPClient(t, s.prosody, "bob@"+xmppDomain+"/laptop", "pw")
	laptopJID := laptop.sess.LocalAddr().String()
	laptop.send(`<presence to='` + to + `'><priority>5</priority></presence>`)
	waitBody(ctx, t, w, "both resources", func(b string) bool {
		return strings.Contains(b, phoneJID) && strings.Contains(b, laptopJID)
	})
	phone.send(`<presence type='unavailable' to='` + to + `'/>`)
	body := waitBody(ctx, t, w, "only the laptop", func(b string) bool {
		return strings.Contains(b, laptopJID) && !strings.Contains(b, phoneJID)
	})
	if !strings.Contains(body, "<basic>open</basic>") {
		t.Fatalf("one resource left but not open:\n%s", body)
	}
	laptop.send(`<presence type='unavailable' to='` + to + `'/>`)
	waitBody(ctx, t, w, "bob closed", func(b string) bool {
		return strings.Contains(b, "<basic>closed</basic>") && !strings.Contains(b, "<basic>open</basic>")
	})

	// Hostile stanzas through prosody: deep (ignored) and huge (larger
	// than max_stanza_size: the gateway drops the session and connects
	// again); the gateway carries on.
	phone.send(`<presence to='` + to + `'>` + strings.Repeat("<x xmlns='urn:x'>", 40) + strings.Repeat("</x>", 40) + `</presence>`)
	connects := s.ps.d.Gateway().Connects()
	phone.send(`<presence to='` + to + `'><status>` + strings.Repeat("h", 100<<10) + `</status></presence>`)
	eventually(t, "the gateway connected again after a huge stanza", func() bool {
		return s.ps.d.Gateway().Connects() > connects && s.ps.d.Gateway().Connected()
	})
	phone.send(`<presence to='` + to + `'><status>still here</status></presence>`)
	body = waitBody(ctx, t, w, "bob back after the hostile stanzas", func(b string) bool { return strings.Contains(b, "still here") })
	if strings.Contains(body, "hhhh") {
		t.Fatalf("the huge status was published:\n%.300s", body)
	}
}

// TestXMPPUserSeesSIPRegistration: an XMPP user subscribes to a SIP user;
// the gateway subscribes at the presence server on its behalf; the SIP
// user registers through a Kamailio registrar mirroring to puaside, and
// the XMPP user gets "subscribed" (once the NOTIFY says active) and the
// SIP user available; the SIP user unregisters and the XMPP user gets
// unavailable; the XMPP user unsubscribes and the SIP subscription ends.
func TestXMPPUserSeesSIPRegistration(t *testing.T) {
	s := newXMPPSetup(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	reg := registrar(t, "WITH_REPLICATE", s.cfg)
	s.prosody.Register(t, "carol", "pw")
	carol := newXMPPClient(t, s.prosody, "carol@"+xmppDomain+"/desk", "pw")
	carol.send(`<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>`) // roster pushes come to a resource that asked for the roster
	carol.send(`<presence/>`)
	alice := "alice@" + xmppComp
	carol.send(`<presence type='subscribe' to='` + alice + `'/>`)
	// prosody turns the gateway's "subscribed" into a roster push.
	eventually(t, "carol's roster subscribed to alice", func() bool { return carol.subscription(alice) == "to" })
	carol.waitPresence("alice unavailable before she registers", func(p xmppPresence) bool {
		return strings.HasPrefix(p.From, alice) && p.Type == "unavailable"
	})
	key := subKeyOf("sip:alice@example.com", "sip:carol@xmpp.localhost")
	if sub, ok := s.ps.d.Engine().Subscription(key); !ok || sub.State != "active" {
		t.Fatalf("the gateway's SIP subscription: %+v, %v", sub, ok)
	}
	// The management listing shows it, owned by xmpp.
	r := runBinary(t, puasideBinary(t), "ls", "xmpp", "--api", "http://"+s.ps.d.Addrs()["http"][0])
	if r.code != 0 || !strings.Contains(r.stdout, "sip:alice@example.com") || !strings.Contains(r.stdout, "sip:carol@xmpp.localhost") ||
		!strings.Contains(r.stdout, "presence.winfo") || !strings.Contains(r.stdout, "xmpp") {
		t.Fatalf("puaside ls xmpp: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	phone := sipphone.NewPhone(t, "alice", "example.com")
	if res, err := phone.Register(ctx, reg.Addr(), 300); err != nil || res.StatusCode != 200 {
		t.Fatalf("register alice: %v %v", res, err)
	}
	carol.waitPresence("alice available", func(p xmppPresence) bool { return strings.HasPrefix(p.From, alice) && p.Type == "" })
	if res, err := phone.Register(ctx, reg.Addr(), 0); err != nil || res.StatusCode != 200 {
		t.Fatalf("unregister alice: %v %v", res, err)
	}
	before := carol.count(func(p xmppPresence) bool { return strings.HasPrefix(p.From, alice) && p.Type == "unavailable" })
	eventually(t, "alice unavailable after unregister", func() bool {
		return carol.count(func(p xmppPresence) bool { return strings.HasPrefix(p.From, alice) && p.Type == "unavailable" }) > before
	})

	carol.send(`<presence type='unsubscribe' to='` + alice + `'/>`)
	eventually(t, "the SIP subscription ended", func() bool {
		_, ok := s.ps.d.Engine().Subscription(key)
		return !ok
	})
}

// TestXMPPSubscriptionRequestFromSIPWatcher: a SIP watcher subscribes to
// an XMPP user at the presence server; the gateway (watching the XMPP
// user's presence.winfo) sends the XMPP user one subscription request
// from the watcher's address; the XMPP user approves and its presence
// (dnd with a status, broadcast, not directed) reaches the SIP watcher.
func TestXMPPSubscriptionRequestFromSIPWatcher(t *testing.T) {
	s := newXMPPSetup(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s.prosody.Register(t, "bob", "pw")
	bob := newXMPPClient(t, s.prosody, "bob@"+xmppDomain+"/desk", "pw")
	bob.send(`<presence/>`)
	// The gateway learns of bob when he first talks to it (here: a
	// directed presence to the gateway's domain).
	bob.send(`<presence to='` + xmppComp + `'/>`)
	eventually(t, "the winfo subscription to bob", func() bool {
		sub, ok := s.ps.d.Engine().Subscription(winfoKeyOf("sip:bob@xmpp.localhost"))
		return ok && sub.State == "active"
	})

	watcher := sipphone.NewPhone(t, "dave", "example.com")
	w := s.watchXMPPUser(ctx, t, watcher, "bob")
	dave := "dave@" + xmppComp
	bob.waitPresence("a subscription request from dave", func(p xmppPresence) bool { return p.From == dave && p.Type == "subscribe" })

	bob.send(`<presence type='subscribed' to='` + dave + `'/>`)
	bob.send(`<presence><show>dnd</show><status>in a meeting</status></presence>`)
	waitBody(ctx, t, w, "bob busy in a meeting", func(b string) bool {
		return strings.Contains(b, "<basic>open</basic>") && strings.Contains(b, "busy") && strings.Contains(b, "in a meeting")
	})
	// A refresh of the SIP watcher's subscription (a new winfo NOTIFY)
	// does not ask bob again.
	time.Sleep(time.Second)
	if n := bob.count(func(p xmppPresence) bool { return p.From == dave && p.Type == "subscribe" }); n != 1 {
		t.Errorf("bob was asked %d times, want 1", n)
	}
}

func subKeyOf(pres, watcher string) pua.SubKey {
	return pua.SubKey{PresURI: pres, WatcherURI: watcher, Event: "presence", ID: puaxmpp.PresID}
}

func winfoKeyOf(pres string) pua.SubKey {
	return pua.SubKey{PresURI: pres, WatcherURI: pres, Event: "presence.winfo", ID: puaxmpp.PresID}
}

// TestXMPPGatewayRestarts: with a SIP watcher of an approved XMPP user,
// prosody restarts: the gateway reconnects within 10 s, the XMPP user
// (offline after the restart) is seen offline, then online again when it
// logs back in; puaside restarts: the XMPP user is not asked to approve
// the watcher again and its presence still flows.
func TestXMPPGatewayRestarts(t *testing.T) {
	s := newXMPPSetup(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s.prosody.Register(t, "bob", "pw")
	bob := newXMPPClient(t, s.prosody, "bob@"+xmppDomain+"/desk", "pw")
	bob.send(`<presence/>`)
	bob.send(`<presence to='` + xmppComp + `'/>`)
	watcher := sipphone.NewPhone(t, "dave", "example.com")
	w := s.watchXMPPUser(ctx, t, watcher, "bob")
	dave := "dave@" + xmppComp
	asked := func(p xmppPresence) bool { return p.From == dave && p.Type == "subscribe" }
	bob.waitPresence("a subscription request from dave", asked)
	bob.send(`<presence type='subscribed' to='` + dave + `'/>`)
	bob.send(`<presence><show>dnd</show><status>before the restart</status></presence>`)
	waitBody(ctx, t, w, "bob busy", func(b string) bool { return strings.Contains(b, "before the restart") })

	// prosody restarts: bob's session is gone with it.
	s.prosody.Stop()
	eventually(t, "the gateway noticed the XMPP server gone", func() bool { return !s.ps.d.Gateway().Connected() })
	connects := s.ps.d.Gateway().Connects()
	s.prosody.Restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for s.ps.d.Gateway().Connects() == connects {
		if time.Now().After(deadline) {
			t.Fatal("the gateway did not reconnect within 10 s of prosody's restart")
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitBody(ctx, t, w, "bob offline after prosody's restart", func(b string) bool {
		return strings.Contains(b, "<basic>closed</basic>") && !strings.Contains(b, "<basic>open</basic>")
	})
	bob = newXMPPClient(t, s.prosody, "bob@"+xmppDomain+"/desk", "pw")
	bob.send(`<presence><show>away</show><status>after the restart</status></presence>`)
	waitBody(ctx, t, w, "bob away after prosody's restart", func(b string) bool {
		return strings.Contains(b, "after the restart") && strings.Contains(b, "<basic>open</basic>")
	})

	// puaside restarts: its records carry on, bob is not asked again.
	s.ps.stop()
	s.ps = startPuaside(t, s.cfg)
	eventually(t, "the gateway connected again", func() bool { return s.ps.d.Gateway().Connected() })
	bob.send(`<presence><status>after puaside's restart</status></presence>`)
	waitBody(ctx, t, w, "bob after puaside's restart", func(b string) bool { return strings.Contains(b, "after puaside's restart") })
	time.Sleep(2 * time.Second) // the winfo NOTIFY of the refresh has come and gone
	if n := bob.count(asked); n != 0 {
		t.Fatalf("bob was asked to approve dave again %d times after the restarts", n)
	}
}

// TestXMPPSeparatorEncoding: with Kamailio's encoding (domain_separator
// "*"), an XMPP user is sip:bob*xmpp.localhost@gw.example.com for SIP
// watchers, and a SIP user alice*example.com@sip.xmpp.localhost for XMPP
// users; presence flows both ways under those addresses.
func TestXMPPSeparatorEncoding(t *testing.T) {
	s := newXMPPSetup(t, false, func(c *config.Config) {
		c.Gateway.DomainSeparator, c.Gateway.GatewayDomain, c.Gateway.GWMap = "*", "gw.example.com", nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s.prosody.Register(t, "bob", "pw")
	watcher := sipphone.NewPhone(t, "watcher", "example.com")
	w, err := watcher.Watch(ctx, s.presence.Addr(), sip.Uri{Scheme: "sip", User: "bob*xmpp.localhost", Host: "gw.example.com"}, "presence", sipphone.WatchOptions{Expires: 600})
	if err != nil {
		t.Fatal(err)
	}
	bob := newXMPPClient(t, s.prosody, "bob@"+xmppDomain+"/desk", "pw")
	bob.send(`<presence to='watcher*example.com@` + xmppComp + `'><show>xa</show><status>gone fishing</status></presence>`)
	waitBody(ctx, t, w, "bob extended away", func(b string) bool {
		return strings.Contains(b, `entity="sip:bob*xmpp.localhost@gw.example.com"`) && strings.Contains(b, "gone fishing")
	})

	bob.send(`<presence/>`)
	bob.send(`<presence type='subscribe' to='alice*example.com@` + xmppComp + `'/>`)
	eventually(t, "the SIP subscription on bob's behalf", func() bool {
		sub, ok := s.ps.d.Engine().Subscription(subKeyOf("sip:alice@example.com", "sip:bob*xmpp.localhost@gw.example.com"))
		return ok && sub.State == "active"
	})
	bob.waitPresence("alice unavailable", func(p xmppPresence) bool {
		return p.From == "alice*example.com@"+xmppComp && p.Type == "unavailable"
	})
}

// TestXMPPThroughPA: the presence server is pa (no Kamailio presence
// server, server_address empty). A SUBSCRIBE to an address of the
// gateway's domain that names no XMPP user is answered 404. A SIP watcher
// subscribing to pa for an XMPP user is pending and becomes one XMPP
// subscription request (a
// refresh and a second subscription do not ask again; no presence.winfo
// subscription is made anywhere); the XMPP user's approval makes it
// active and the user's presence (dnd with a status) reaches it. An XMPP
// user subscribes to a SIP user: the gateway's SUBSCRIBE goes to pa (the
// XMPP domain is allowed by a policy rule, else the SIP user's owner would
// decide it), and the SIP user's registration through a Kamailio registrar
// mirroring to puaside reaches the XMPP user as available, then
// unavailable.
func TestXMPPThroughPA(t *testing.T) {
	s := newXMPPSetupWith(t, true, true, func(c *config.Config) {
		c.PA.Policy.Rules = []pa.Rule{{Watcher: xmppDomain, Action: "allow"}}
	})
	if s.ps.d.PA() == nil {
		t.Fatal("pa does not run")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	reg := registrar(t, "WITH_REPLICATE", s.cfg)
	s.prosody.Register(t, "bob", "pw")
	s.prosody.Register(t, "carol", "pw")
	bob := newXMPPClient(t, s.prosody, "bob@"+xmppDomain+"/desk", "pw")
	bob.send(`<presence/>`)

	dave := sipphone.NewPhone(t, "dave", "example.com")
	w := s.watchXMPPUser(ctx, t, dave, "bob")
	wctx, wcancel := context.WithTimeout(ctx, waitLimit)
	if _, err := w.WaitNotify(wctx, func(n sipphone.Notification) bool { return strings.HasPrefix(n.State, "pending") }); err != nil {
		t.Fatalf("the watcher of an XMPP user is not pending: %v; %+v", err, w.Notifications())
	}
	wcancel()
	// An address in the gateway's domain that names no XMPP user (a quote
	// is not allowed in a JID's localpart): 404, and nobody is asked.
	if _, err := dave.Watch(ctx, s.presence.Addr(), sip.Uri{Scheme: "sip", User: "no%22body", Host: xmppDomain}, "presence", sipphone.WatchOptions{Expires: 600}); err == nil || !strings.Contains(err.Error(), ": 404 ") {
		t.Fatalf("a SUBSCRIBE to nobody at the gateway: %v, want 404", err)
	}
	daveJID := "dave@" + xmppComp
	asked := func(p xmppPresence) bool { return p.From == daveJID && p.Type == "subscribe" }
	bob.waitPresence("a subscription request from dave", asked)
	if res, err := w.Refresh(ctx, 600); err != nil || res.StatusCode != 200 {
		t.Fatalf("refresh: %v %v", res, err)
	}
	w2 := s.watchXMPPUser(ctx, t, dave, "bob")

	bob.send(`<presence type='subscribed' to='` + daveJID + `'/>`)
	bob.send(`<presence><show>dnd</show><status>in a meeting</status></presence>`)
	for _, x := range []*sipphone.Watcher{w, w2} {
		wctx, wcancel := context.WithTimeout(ctx, waitLimit)
		_, err := x.WaitNotify(wctx, func(n sipphone.Notification) bool {
			return strings.HasPrefix(n.State, "active") && strings.Contains(n.Body, "<basic>open</basic>") &&
				strings.Contains(n.Body, "busy") && strings.Contains(n.Body, "in a meeting")
		})
		wcancel()
		if err != nil {
			t.Fatalf("the SIP watcher never saw bob busy in a meeting: %v; %+v", err, x.Notifications())
		}
	}
	if n := bob.count(asked); n != 1 {
		t.Errorf("bob was asked %d times, want 1", n)
	}
	if _, ok := s.ps.d.Engine().Subscription(winfoKeyOf("sip:bob@xmpp.localhost")); ok {
		t.Error("the gateway watches presence.winfo although pa tells it of its watchers")
	}

	carol := newXMPPClient(t, s.prosody, "carol@"+xmppDomain+"/desk", "pw")
	carol.send(`<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>`)
	carol.send(`<presence/>`)
	alice := "alice@" + xmppComp
	carol.send(`<presence type='subscribe' to='` + alice + `'/>`)
	eventually(t, "carol's roster subscribed to alice", func() bool { return carol.subscription(alice) == "to" })
	found := false
	for _, x := range s.ps.d.PA().Watchers() {
		found = found || x.PresURI == "sip:alice@example.com" && x.WatcherURI == "sip:carol@xmpp.localhost" && x.Status == "active"
	}
	if !found {
		t.Fatalf("pa holds no active subscription of carol to alice: %+v", s.ps.d.PA().Watchers())
	}
	phone := sipphone.NewPhone(t, "alice", "example.com")
	if res, err := phone.Register(ctx, reg.Addr(), 300); err != nil || res.StatusCode != 200 {
		t.Fatalf("register alice: %v %v", res, err)
	}
	carol.waitPresence("alice available", func(p xmppPresence) bool { return strings.HasPrefix(p.From, alice) && p.Type == "" })
	unavailable := func(p xmppPresence) bool { return strings.HasPrefix(p.From, alice) && p.Type == "unavailable" }
	before := carol.count(unavailable)
	if res, err := phone.Register(ctx, reg.Addr(), 0); err != nil || res.StatusCode != 200 {
		t.Fatalf("unregister alice: %v %v", res, err)
	}
	eventually(t, "alice unavailable after unregister", func() bool { return carol.count(unavailable) > before })
}

// TestXMPPUserSeesSIPCall: an XMPP user subscribed to a SIP user sees the
// SIP user's calls. The SIP phones register and call through a Kamailio
// registrar whose siptrace copies go to puaside (usrloc publishes the
// presence, dialoginfo the dialogs); the gateway holds a dialog
// subscription beside the presence one, and the XMPP user sees bob
// available after he registers, away "On the phone" while his call is
// confirmed, and available again after the BYE. With Kamailio's presence
// server, and with pa.
func TestXMPPUserSeesSIPCall(t *testing.T) {
	for _, tc := range []struct {
		name   string
		withPA bool
	}{{"kamailio", false}, {"pa", true}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newXMPPSetupWith(t, true, tc.withPA, func(c *config.Config) {
				c.Features.Dialoginfo = true
				c.Dialoginfo.TerminatedLinger = time.Second
				c.Dialoginfo.FlushInterval = 200 * time.Millisecond
				c.PA.Policy.Rules = []pa.Rule{{Watcher: xmppDomain, Action: "allow"}}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			reg := registrar(t, "WITH_SIPTRACE", s.cfg)
			s.prosody.Register(t, "carol", "pw")
			carol := newXMPPClient(t, s.prosody, "carol@"+xmppDomain+"/desk", "pw")
			carol.send(`<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>`)
			carol.send(`<presence/>`)
			bobJID := "bob@" + xmppComp
			carol.send(`<presence type='subscribe' to='` + bobJID + `'/>`)
			eventually(t, "carol's roster subscribed to bob", func() bool { return carol.subscription(bobJID) == "to" })
			dk := subKeyOf("sip:bob@example.com", "sip:carol@xmpp.localhost")
			dk.Event = "dialog"
			eventually(t, "the gateway's dialog subscription active", func() bool {
				sub, ok := s.ps.d.Engine().Subscription(dk)
				return ok && sub.State == pua.StateActive
			})

			fromBob := func(ok func(xmppPresence) bool) func(xmppPresence) bool {
				return func(p xmppPresence) bool { return strings.HasPrefix(p.From, bobJID) && ok(p) }
			}
			available := fromBob(func(p xmppPresence) bool { return p.Type == "" && p.Show == "" })
			onPhone := fromBob(func(p xmppPresence) bool {
				return p.Type == "" && p.Show == "away" && p.Status == puaxmpp.StatusOnThePhone
			})
			bob := sipphone.NewPhone(t, "bob", "example.com")
			alice := sipphone.NewPhone(t, "alice", "example.com")
			for _, ph := range []*sipphone.Phone{bob, alice} {
				if res, err := ph.Register(ctx, reg.Addr(), 300); err != nil || res.StatusCode != 200 {
					t.Fatalf("register %s: %v %v", ph.User, res, err)
				}
			}
			carol.waitPresence("bob available", available)
			if n := carol.count(onPhone); n != 0 {
				t.Fatalf("bob on the phone before any call (%d)", n)
			}

			call, err := alice.Invite(ctx, reg.Addr(), bob.AoR())
			if err != nil {
				t.Fatal(err)
			}
			if err := call.WaitAnswer(ctx); err != nil {
				t.Fatalf("answer: %v", err)
			}
			carol.waitPresence("bob away on the phone", onPhone)
			before := carol.count(available)
			if err := call.Bye(ctx); err != nil {
				t.Fatal(err)
			}
			eventually(t, "bob available again after the BYE", func() bool { return carol.count(available) > before })
			if n := carol.count(onPhone); n != 1 {
				t.Errorf("bob shown on the phone %d times for one call, want 1", n)
			}

			carol.send(`<presence type='unsubscribe' to='` + bobJID + `'/>`)
			eventually(t, "the dialog subscription ended with the presence one", func() bool {
				_, ok := s.ps.d.Engine().Subscription(dk)
				return !ok
			})
		})
	}
}
