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

func newXMPPSetup(t *testing.T, usrloc bool) *xmppSetup {
	t.Helper()
	s := &xmppSetup{prosody: prosodytest.Start(t, prosodytest.Options{Domain: xmppDomain, Component: xmppComp, Secret: "s3cret"})}
	presence := presenceServer(t)
	s.presence = presence
	s.cfg = baseConfig(t, presence)
	s.cfg.Features.Usrloc = usrloc
	s.cfg.Features.Dialoginfo = false
	s.cfg.Features.BLA = false
	s.cfg.Usrloc.MinExpires = time.Second
	x := &s.cfg.XMPP
	x.Enabled = true
	x.XMPPDomain = xmppComp
	x.XMPPHost = s.prosody.ComponentHost()
	x.XMPPPort = s.prosody.ComponentPort()
	x.XMPPPassword = "s3cret"
	x.GWMap = map[string]string{"example.com": xmppComp}
	x.ReconnectMin = 100 * time.Millisecond
	x.ReconnectMax = time.Second
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
	t    *testing.T
	sess *xmpp.Session
	mu   sync.Mutex
	got  []xmppPresence
}

func newXMPPClient(t *testing.T, pr *prosodytest.Server, full, pw string) *xmppClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	sess, err := pr.Dial(ctx, jid.MustParse(full), pw)
	if err != nil {
		t.Fatalf("xmpp login %s: %v", full, err)
	}
	c := &xmppClient{t: t, sess: sess}
	go func() {
		_ = sess.Serve(xmpp.HandlerFunc(func(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
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
			return nil
		}))
	}()
	t.Cleanup(func() { _ = sess.Close() })
	return c
}

// send sends raw XML (one stanza) on the client's stream.
func (c *xmppClient) send(raw string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := c.sess.Send(ctx, xml.NewDecoder(strings.NewReader(raw))); err != nil {
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
		if time.Now().After(deadline) {
			c.t.Fatalf("xmpp client never got %s; got %+v", what, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
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
}
