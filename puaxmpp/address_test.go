package puaxmpp

import (
	"errors"
	"testing"

	"mellium.im/xmpp/jid"
)

func mapperOf(t testing.TB, mut func(*Config)) *Mapper {
	t.Helper()
	c := DefaultConfig()
	c.XMPPDomain = "sip.xmpp.example.com"
	c.GWMap = map[string]string{"example.com": "sip.xmpp.example.com", "sip.jabber.org": "jabber.org"}
	if mut != nil {
		mut(&c)
	}
	m, err := NewMapper(c)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMapperOneToOne(t *testing.T) {
	m := mapperOf(t, nil)
	for _, c := range []struct{ sip, jid string }{
		{"sip:alice@example.com", "alice@sip.xmpp.example.com"},
		{"sip:a.b!c@example.com", "a.b!c@sip.xmpp.example.com"},
		{"sip:%C3%A9mile@example.com", "émile@sip.xmpp.example.com"},
	} {
		j, err := m.JIDOfSIPUser(c.sip)
		if err != nil || j.String() != c.jid {
			t.Errorf("JIDOfSIPUser(%q) = %v, %v; want %s", c.sip, j, err, c.jid)
			continue
		}
		back, err := m.SIPUserOfJID(j)
		if err != nil || back != c.sip {
			t.Errorf("SIPUserOfJID(%s) = %q, %v; want %s", j, back, err, c.sip)
		}
	}
	for _, c := range []struct{ jid, sip string }{
		{"bob@xmpp.localhost/phone", "sip:bob@xmpp.localhost"},
		{"carol@jabber.org", "sip:carol@sip.jabber.org"},
		{"d%e@xmpp.localhost", "sip:d%25e@xmpp.localhost"},
	} {
		s, err := m.SIPOfXMPPUser(jid.MustParse(c.jid))
		if err != nil || s != c.sip {
			t.Errorf("SIPOfXMPPUser(%s) = %q, %v; want %s", c.jid, s, err, c.sip)
			continue
		}
		back, err := m.XMPPUserOfSIP(s)
		if err != nil || back.String() != jid.MustParse(c.jid).Bare().String() {
			t.Errorf("XMPPUserOfSIP(%s) = %v, %v", s, back, err)
		}
	}
	// Refusals, each with its reason.
	for _, c := range []struct {
		name string
		err  error
		f    func() error
	}{
		{"SIP user of an unmapped domain", ErrUnmapped, func() error { _, err := m.JIDOfSIPUser("sip:x@other.org"); return err }},
		{"XMPP user in the component's domain", ErrUnmapped, func() error {
			_, err := m.SIPOfXMPPUser(jid.MustParse("x@sip.xmpp.example.com"))
			return err
		}},
		{"SIP URI of a SIP domain as an XMPP user", ErrUnmapped, func() error { _, err := m.XMPPUserOfSIP("sip:x@example.com"); return err }},
		{"an XMPP domain that is another SIP domain's image", ErrUnmapped, func() error {
			_, err := m.XMPPUserOfSIP("sip:x@jabber.org")
			return err
		}},
		{"a user no JID can carry", ErrNoUser, func() error { _, err := m.XMPPUserOfSIP("sip:a%22b@xmpp.localhost"); return err }},
		{"an XMPP user's address with a port", ErrNoUser, func() error { _, err := m.XMPPUserOfSIP("sip:bob@xmpp.localhost:5062"); return err }},
		{"tel URI", ErrBadAddress, func() error { _, err := m.JIDOfSIPUser("tel:+123"); return err }},
		{"broken escape", ErrBadAddress, func() error { _, err := m.JIDOfSIPUser("sip:a%zz@example.com"); return err }},
		{"JID at another domain", ErrUnmapped, func() error {
			_, err := m.SIPUserOfJID(jid.MustParse("x@elsewhere"))
			return err
		}},
		{"domain JID", ErrBadAddress, func() error { _, err := m.SIPUserOfJID(jid.MustParse("sip.xmpp.example.com")); return err }},
	} {
		if err := c.f(); !errors.Is(err, c.err) {
			t.Errorf("%s: %v, want %v", c.name, err, c.err)
		}
	}
}

func TestMapperSeparator(t *testing.T) {
	m := mapperOf(t, func(c *Config) { c.DomainSeparator, c.GatewayDomain, c.GWMap = "*", "gw.example.com", nil })
	j, err := m.JIDOfSIPUser("sip:alice@example.com")
	if err != nil || j.String() != "alice*example.com@sip.xmpp.example.com" {
		t.Fatalf("JIDOfSIPUser = %v, %v", j, err)
	}
	if s, err := m.SIPUserOfJID(j); err != nil || s != "sip:alice@example.com" {
		t.Fatalf("SIPUserOfJID = %q, %v", s, err)
	}
	s, err := m.SIPOfXMPPUser(jid.MustParse("bob@jabber.org/x"))
	if err != nil || s != "sip:bob*jabber.org@gw.example.com" {
		t.Fatalf("SIPOfXMPPUser = %q, %v", s, err)
	}
	if b, err := m.XMPPUserOfSIP(s); err != nil || b.String() != "bob@jabber.org" {
		t.Fatalf("XMPPUserOfSIP = %v, %v", b, err)
	}
	// Outside the gateway's domain: not its business. Inside it but naming
	// no XMPP user: the gateway's, and nobody's (pa answers 404).
	for bad, want := range map[string]error{
		"sip:bob*jabber.org@other":                    ErrUnmapped,
		"sip:bob@gw.example.com":                      ErrNoUser,
		"sip:bob*@gw.example.com":                     ErrNoUser,
		"sip:*jabber.org@gw.example.com":              ErrNoUser,
		"sip:bob*sip.xmpp.example.com@gw.example.com": ErrNoUser,
		"sip:a%22b*jabber.org@gw.example.com":         ErrNoUser,
		"sip:a%zz*jabber.org@gw.example.com":          ErrNoUser,
	} {
		_, err := m.XMPPUserOfSIP(bad)
		if !errors.Is(err, want) {
			t.Errorf("XMPPUserOfSIP(%q): %v, want %v", bad, err, want)
		}
		if want == ErrUnmapped && errors.Is(err, ErrNoUser) {
			t.Errorf("XMPPUserOfSIP(%q): %v is also ErrNoUser", bad, err)
		}
	}
	if _, err := m.SIPUserOfJID(jid.MustParse("alice@sip.xmpp.example.com")); !errors.Is(err, ErrUnmapped) {
		t.Errorf("a component JID without the separator: %v", err)
	}
}

func TestDomainMapMustBeOneToOne(t *testing.T) {
	c := DefaultConfig()
	c.GWMap = map[string]string{"a.com": "x.org", "b.com": "x.org"}
	if err := c.Validate(); !errors.Is(err, ErrConfig) {
		t.Fatalf("two SIP domains to one XMPP domain accepted: %v", err)
	}
}

// FuzzMapper: no input crashes the mapping, and what maps maps back to the
// same address (one to one), in both modes.
func FuzzMapper(f *testing.F) {
	for _, s := range []string{"sip:alice@example.com", "sip:bob@xmpp.localhost", "sip:a%25b@example.com", "bob@jabber.org/r",
		"sip:x*y@gw.example.com", "alice*example.com@sip.xmpp.example.com", "sip:%ff@example.com", "sips:a@EXAMPLE.com"} {
		f.Add(s)
	}
	one := mapperOf(f, nil)
	sep := mapperOf(f, func(c *Config) { c.DomainSeparator, c.GatewayDomain, c.GWMap = "*", "gw.example.com", nil })
	f.Fuzz(func(t *testing.T, s string) {
		for _, m := range []*Mapper{one, sep} {
			if j, err := m.JIDOfSIPUser(s); err == nil {
				back, err := m.SIPUserOfJID(j)
				if err != nil {
					t.Fatalf("SIP user %q → %s → %v", s, j, err)
				}
				if j2, err := m.JIDOfSIPUser(back); err != nil || !j2.Equal(j) {
					t.Fatalf("SIP user %q → %s → %q → %v, %v", s, j, back, j2, err)
				}
			}
			if u, err := m.XMPPUserOfSIP(s); err == nil {
				back, err := m.SIPOfXMPPUser(u)
				if err != nil {
					t.Fatalf("XMPP user %q → %s → %v", s, u, err)
				}
				if u2, err := m.XMPPUserOfSIP(back); err != nil || !u2.Equal(u) {
					t.Fatalf("XMPP user %q → %s → %q → %v, %v", s, u, back, u2, err)
				}
			}
			if j, err := jid.Parse(s); err == nil {
				if sipURI, err := m.SIPOfXMPPUser(j); err == nil {
					if u, err := m.XMPPUserOfSIP(sipURI); err != nil || !u.Equal(j.Bare()) {
						t.Fatalf("JID %s → %q → %v, %v", j, sipURI, u, err)
					}
				}
				if sipURI, err := m.SIPUserOfJID(j); err == nil {
					if j2, err := m.JIDOfSIPUser(sipURI); err != nil || !j2.Equal(j.Bare()) {
						t.Fatalf("component JID %s → %q → %v, %v", j, sipURI, j2, err)
					}
				}
			}
		}
	})
}
