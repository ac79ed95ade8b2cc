package puaxmpp

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"mellium.im/xmpp/jid"

	"github.com/puaside/puaside/aor"
)

// Reasons an address is refused. Callers test them with errors.Is.
var (
	// ErrBadAddress is an address that is not a valid SIP URI or JID.
	ErrBadAddress = errors.New("puaxmpp: malformed address")
	// ErrUnmapped is a valid address outside the gateway's domains.
	ErrUnmapped = errors.New("puaxmpp: address not served by the gateway")
	// ErrNoUser is a SIP address in the gateway's domains that names no
	// XMPP user (no separator, the gateway itself, a user part no JID can
	// carry): the gateway's, but nobody's. pa answers its SUBSCRIBEs 404.
	ErrNoUser = errors.New("puaxmpp: no XMPP user at this address")
)

// Mapper maps addresses between SIP and XMPP, one to one. SIP users are
// seen by XMPP users at the component's domain; XMPP users are seen by SIP
// users in their own domain (one-to-one mode, RFC 7247, with the optional
// domain map) or, with a separator, as user<sep>domain@gateway_domain
// (Kamailio's xmpp module).
type Mapper struct {
	comp string
	gw   string
	sep  string
	dm   domainMap
}

// NewMapper builds the mapper of a validated configuration.
func NewMapper(cfg Config) (*Mapper, error) {
	dm, err := newDomainMap(cfg.XMPPDomain, cfg.GWMap)
	if err != nil {
		return nil, fmt.Errorf("%w: gwmap: %w", ErrConfig, err)
	}
	return &Mapper{comp: strings.ToLower(cfg.XMPPDomain), gw: strings.ToLower(cfg.GatewayDomain), sep: cfg.DomainSeparator, dm: dm}, nil
}

// Component is the component's domain JID.
func (m *Mapper) Component() string { return m.comp }

// domainMap is the one-to-one SIP domain ↔ XMPP domain map.
type domainMap struct{ s2x, x2s map[string]string }

func newDomainMap(comp string, in map[string]string) (domainMap, error) {
	dm := domainMap{s2x: map[string]string{}, x2s: map[string]string{}}
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s, x := strings.ToLower(strings.TrimSpace(k)), strings.ToLower(strings.TrimSpace(in[k]))
		if s == "" || x == "" || strings.ContainsAny(s+x, "@/ ") {
			return dm, fmt.Errorf("%q=%q is not a pair of domains", k, in[k])
		}
		if _, dup := dm.s2x[s]; dup {
			return dm, fmt.Errorf("SIP domain %q mapped twice", s)
		}
		if prev, dup := dm.x2s[x]; dup {
			return dm, fmt.Errorf("XMPP domain %q is the image of %q and %q (the map must be one to one)", x, prev, s)
		}
		dm.s2x[s], dm.x2s[x] = x, s
	}
	return dm, nil
}

// toXMPP is the XMPP domain of SIP domain s ("" when none: s is unmapped
// but another SIP domain's image, which would make two SIP domains one).
func (dm domainMap) toXMPP(s string) string {
	if x, ok := dm.s2x[s]; ok {
		return x
	}
	if _, taken := dm.x2s[s]; taken {
		return ""
	}
	return s
}

// toSIP is the SIP domain of XMPP domain x ("" when none).
func (dm domainMap) toSIP(x string) string {
	if s, ok := dm.x2s[x]; ok {
		return s
	}
	if _, taken := dm.s2x[x]; taken {
		return ""
	}
	return x
}

// JIDOfSIPUser is the bare JID at the component that XMPP users see for
// the SIP user sipURI.
func (m *Mapper) JIDOfSIPUser(sipURI string) (jid.JID, error) {
	user, host, err := parseSIP(sipURI)
	if err != nil {
		return jid.JID{}, err
	}
	if m.sep != "" {
		if strings.Contains(host, m.sep) {
			return jid.JID{}, fmt.Errorf("%w: SIP domain %q holds the separator %q", ErrBadAddress, host, m.sep)
		}
		return makeJID(user+m.sep+host, m.comp)
	}
	if m.dm.toXMPP(host) != m.comp {
		return jid.JID{}, fmt.Errorf("%w: SIP domain %q is not mapped to %s", ErrUnmapped, host, m.comp)
	}
	return makeJID(user, m.comp)
}

// SIPUserOfJID is the SIP user's URI for a JID at the component.
func (m *Mapper) SIPUserOfJID(j jid.JID) (string, error) {
	if !strings.EqualFold(j.Domainpart(), m.comp) {
		return "", fmt.Errorf("%w: %s is not at %s", ErrUnmapped, j.Bare(), m.comp)
	}
	local := j.Localpart()
	if local == "" {
		return "", fmt.Errorf("%w: %s has no user", ErrBadAddress, j)
	}
	if m.sep != "" {
		i := strings.LastIndex(local, m.sep)
		if i <= 0 || i == len(local)-len(m.sep) {
			return "", fmt.Errorf("%w: %q has no %q between user and SIP domain", ErrUnmapped, local, m.sep)
		}
		return makeSIP(local[:i], local[i+len(m.sep):])
	}
	host := m.dm.toSIP(m.comp)
	if host == "" {
		return "", fmt.Errorf("%w: no SIP domain for %s", ErrUnmapped, m.comp)
	}
	return makeSIP(local, host)
}

// SIPOfXMPPUser is the SIP URI that SIP users see for the XMPP user j (its
// bare JID: resources are not addressable from SIP).
func (m *Mapper) SIPOfXMPPUser(j jid.JID) (string, error) {
	d := strings.ToLower(j.Domainpart())
	if d == m.comp {
		return "", fmt.Errorf("%w: %s is a SIP user's address", ErrUnmapped, j.Bare())
	}
	local := j.Localpart()
	if local == "" || d == "" {
		return "", fmt.Errorf("%w: %s has no user", ErrBadAddress, j)
	}
	if m.sep != "" {
		if strings.Contains(d, m.sep) {
			return "", fmt.Errorf("%w: XMPP domain %q holds the separator %q", ErrBadAddress, d, m.sep)
		}
		return makeSIP(local+m.sep+d, m.gw)
	}
	host := m.dm.toSIP(d)
	if host == "" {
		return "", fmt.Errorf("%w: no SIP domain for XMPP domain %s", ErrUnmapped, d)
	}
	return makeSIP(local, host)
}

// XMPPUserOfSIP is the XMPP user's bare JID for the SIP URI that SIP
// users see for it. A URI outside the gateway's domains is refused with
// ErrUnmapped; one inside them that names no XMPP user with ErrNoUser.
func (m *Mapper) XMPPUserOfSIP(sipURI string) (jid.JID, error) {
	a, err := aor.Parse(sipURI, "")
	if err != nil {
		return jid.JID{}, fmt.Errorf("%w: %w", ErrBadAddress, err)
	}
	if m.sep != "" {
		if a.Host != m.gw {
			return jid.JID{}, fmt.Errorf("%w: %q is not at %s", ErrUnmapped, sipURI, m.gw)
		}
	} else if x := m.dm.toXMPP(a.Host); x == "" || x == m.comp {
		return jid.JID{}, fmt.Errorf("%w: SIP domain %q is not an XMPP domain", ErrUnmapped, a.Host)
	}
	// The address is the gateway's from here: what is wrong with it is
	// that it names nobody.
	user, err := userOf(a, sipURI)
	if err != nil {
		return jid.JID{}, fmt.Errorf("%w: %w", ErrNoUser, err)
	}
	domain := m.dm.toXMPP(a.Host)
	if m.sep != "" {
		i := strings.LastIndex(user, m.sep)
		if i <= 0 || i == len(user)-len(m.sep) {
			return jid.JID{}, fmt.Errorf("%w: %q has no %q between user and XMPP domain", ErrNoUser, user, m.sep)
		}
		user, domain = user[:i], user[i+len(m.sep):]
		if strings.EqualFold(domain, m.comp) {
			return jid.JID{}, fmt.Errorf("%w: %q names the gateway itself", ErrNoUser, sipURI)
		}
	}
	j, err := makeJID(user, domain)
	if err != nil {
		return jid.JID{}, fmt.Errorf("%w: %w", ErrNoUser, err)
	}
	return j, nil
}

// parseSIP reads a SIP URI's user (unescaped) and lower-cased host.
func parseSIP(s string) (user, host string, err error) {
	a, err := aor.Parse(s, "")
	if err != nil {
		return "", "", fmt.Errorf("%w: %w", ErrBadAddress, err)
	}
	user, err = userOf(a, s)
	return user, a.Host, err
}

// userOf is the unescaped user of the parsed SIP URI s; a URI with a port
// or without a user names no one.
func userOf(a aor.Address, s string) (string, error) {
	if a.Port != 0 {
		return "", fmt.Errorf("%w: %q has a port", ErrBadAddress, s)
	}
	user, ok := aor.Unescape(a.User)
	if !ok || user == "" {
		return "", fmt.Errorf("%w: user of %q", ErrBadAddress, s)
	}
	return user, nil
}

func makeJID(local, domain string) (jid.JID, error) {
	j, err := jid.New(local, domain, "")
	if err != nil {
		return jid.JID{}, fmt.Errorf("%w: %q@%q: %w", ErrBadAddress, local, domain, err)
	}
	return j, nil
}

func makeSIP(user, host string) (string, error) {
	s := "sip:" + escape(user) + "@" + strings.ToLower(host)
	if _, err := aor.Parse(s, ""); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadAddress, err)
	}
	return s, nil
}

// escape percent-encodes what a SIP URI user part cannot carry as it is
// (RFC 3261 unreserved and user-unreserved characters are kept, except ';'
// and '?', which end a user in many parsers).
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.!~*'()&=+$,/", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		const hex = "0123456789ABCDEF"
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}
