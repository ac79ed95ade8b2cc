package usrloc

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/aor"
	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/internal/sipwrite"
)

// Reasons a REGISTER (or its reply) is rejected. Each is a metric label
// (rejected_<reason>) and a log value.
var (
	ErrNotRegister = errors.New("not_register")
	ErrNoTo        = errors.New("no_to")
	ErrToNotSIP    = errors.New("to_not_sip")
	ErrToNoUser    = errors.New("to_no_user")
	ErrNoDomain    = errors.New("no_domain")
	ErrNoContact   = errors.New("no_contact")
	ErrBadContact  = errors.New("bad_contact")
	ErrWildcard    = errors.New("bad_wildcard")
	ErrBadExpires  = errors.New("bad_expires")
	ErrNoCallID    = errors.New("no_call_id")
)

// Register is what a REGISTER request or its 2xx reply says, parsed and
// normalised but not yet applied.
type Register struct {
	// AoR is the normalised address of record: "sip:user@host" with the
	// host lowercased, without port or parameters.
	AoR string
	// CallID and CSeq identify the transaction.
	CallID string
	CSeq   uint32
	// Expires is the Expires header value; -1 when absent.
	Expires int
	// Wildcard is true for "Contact: *" (with Expires: 0): remove all.
	Wildcard bool
	// Contacts are the Contact entries in order; Expires is the contact's
	// expires parameter, -1 when absent; Q is -1 when absent.
	Contacts []event.Contact
	// Publish is the per-user publishing flag carried by the request, nil
	// when the header is absent.
	Publish *bool
	// UserAgent is the User-Agent header of a request.
	UserAgent string
}

// userAoR applies the AoR rule (package aor) with usrloc's default domain
// and reports a refusal as one of usrloc's reasons.
func userAoR(s, defaultDomain string) (string, error) {
	a, err := aor.Normalize(s, defaultDomain)
	return a, aorReason(err)
}

// aorReason maps a refusal of package aor to the reason usrloc counts.
func aorReason(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, aor.ErrNotSIP):
		return ErrToNotSIP
	case errors.Is(err, aor.ErrNoDomain):
		return ErrNoDomain
	}
	return ErrToNoUser
}

// ParseRegister parses a REGISTER request. publishHeader is the name of
// the per-user flag header ("" = none). A request without To, or without
// Contact (a binding query), or with a malformed Contact is rejected with
// one of the Err* reasons.
func ParseRegister(req *sip.Request, publishHeader string) (Register, error) {
	if req == nil || req.Method != sip.REGISTER {
		return Register{}, ErrNotRegister
	}
	r, err := parseCommon(req)
	if err != nil {
		return r, err
	}
	hs := scanHeaders(req, publishHeader)
	if hs.expires != nil {
		v, err := parseSeconds(hs.expires.Value())
		if err != nil {
			return r, ErrBadExpires
		}
		r.Expires = v
	}
	if hs.userAgent != nil {
		r.UserAgent = hs.userAgent.Value()
	}
	if hs.publish != nil {
		on := flagValue(hs.publish.Value())
		r.Publish = &on
	}
	if err := parseContacts(hs.contacts, &r); err != nil {
		return r, err
	}
	if r.Wildcard {
		if len(r.Contacts) > 0 || r.Expires != 0 {
			return r, ErrWildcard
		}
		return r, nil
	}
	if len(r.Contacts) == 0 {
		return r, ErrNoContact
	}
	for i := range r.Contacts {
		r.Contacts[i].UserAgent = r.UserAgent
	}
	return r, nil
}

// registerHeaders are the headers of a REGISTER or its reply that usrloc
// reads beyond To, Call-ID and CSeq: the first of each, and every Contact.
type registerHeaders struct {
	expires, userAgent, publish sip.Header
	contacts                    []sip.Header
}

// scanHeaders finds the registerHeaders of m in one walk over its headers
// (sipgo's GetHeader lowercases every header name it passes, a string for
// each uncommon one, per call). publishHeader "" is none.
func scanHeaders(m sip.Message, publishHeader string) registerHeaders {
	var r registerHeaders
	all, ok := m.(interface{ Headers() []sip.Header })
	if !ok {
		first := func(name string) sip.Header {
			if hs := m.GetHeaders(name); len(hs) > 0 {
				return hs[0]
			}
			return nil
		}
		r.expires, r.userAgent = first("Expires"), first("User-Agent")
		if publishHeader != "" {
			r.publish = first(publishHeader)
		}
		r.contacts = m.GetHeaders("Contact")
		return r
	}
	for _, h := range all.Headers() {
		name := h.Name()
		switch {
		case sipwrite.SameName(name, "Contact"):
			r.contacts = append(r.contacts, h)
		case r.expires == nil && sipwrite.SameName(name, "Expires"):
			r.expires = h
		case r.userAgent == nil && sipwrite.SameName(name, "User-Agent"):
			r.userAgent = h
		}
		// Checked apart: the flag header may be named like one above.
		if publishHeader != "" && r.publish == nil && sipwrite.SameName(name, publishHeader) {
			r.publish = h
		}
	}
	return r
}

// ParseRegisterReply parses a 2xx reply to REGISTER: its Contact list is
// the complete binding set (possibly empty) with the granted expiries.
func ParseRegisterReply(res *sip.Response) (Register, error) {
	if res == nil {
		return Register{}, ErrNotRegister
	}
	r, err := parseCommon(res)
	if err != nil {
		return r, err
	}
	hs := scanHeaders(res, "")
	if hs.expires != nil {
		if v, err := parseSeconds(hs.expires.Value()); err == nil {
			r.Expires = v
		}
	}
	if err := parseContacts(hs.contacts, &r); err != nil {
		return r, err
	}
	if r.Wildcard {
		return r, ErrWildcard
	}
	return r, nil
}

// parseCommon reads To, Call-ID and CSeq.
func parseCommon(m sip.Message) (Register, error) {
	r := Register{Expires: -1}
	cs := m.CSeq()
	if cs == nil || cs.MethodName != sip.REGISTER {
		return r, ErrNotRegister
	}
	r.CSeq = cs.SeqNo
	cid := m.CallID()
	if cid == nil || cid.Value() == "" {
		return r, ErrNoCallID
	}
	r.CallID = cid.Value()
	to := m.To()
	if to == nil {
		return r, ErrNoTo
	}
	a, err := aor.FromURI(&to.Address)
	err = aorReason(err)
	if err != nil {
		return r, err
	}
	r.AoR = a
	return r, nil
}

// parseContacts reads every Contact header entry.
func parseContacts(contacts []sip.Header, r *Register) error {
	var scratch [256]byte
	for _, h := range contacts {
		ch, ok := h.(*sip.ContactHeader)
		if !ok {
			return ErrBadContact
		}
		if ch.Address.Wildcard {
			r.Wildcard = true
			continue
		}
		uri := string(sipwrite.AppendURI(scratch[:0], &ch.Address))
		if ch.Address.Host == "" || uri == "" || strings.ContainsAny(uri, " \t\r\n<>") {
			return ErrBadContact
		}
		c := event.Contact{URI: uri, Expires: -1, Q: -1, CallID: r.CallID, CSeq: r.CSeq}
		for _, kv := range ch.Params {
			switch strings.ToLower(kv.K) {
			case "expires":
				v, err := parseSeconds(kv.V)
				if err != nil {
					return ErrBadExpires
				}
				c.Expires = v
			case "q":
				q, err := strconv.ParseFloat(strings.TrimSpace(kv.V), 64)
				if err != nil || math.IsNaN(q) || q < 0 || q > 1 {
					return ErrBadContact
				}
				c.Q = math.Round(q*1000) / 1000
			case "received":
				c.Received = strings.Trim(kv.V, "\"")
			case "+sip.instance":
				c.Instance = strings.Trim(kv.V, "\"")
			case "reg-id":
				c.RegID = strings.TrimSpace(kv.V)
			}
		}
		r.Contacts = append(r.Contacts, c)
	}
	return nil
}

// maxSeconds bounds an expiry value (about 136 years would overflow
// nothing, but no registrar grants more than a few days).
const maxSeconds = 1 << 31

// parseSeconds reads a delta-seconds value.
func parseSeconds(s string) (int, error) {
	s = strings.TrimSpace(s)
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("usrloc: delta-seconds %q: %w", s, ErrBadExpires)
	}
	if v > maxSeconds {
		v = maxSeconds
	}
	return int(v), nil
}

// flagValue reads the publishing flag header: "0", "no", "off", "false"
// turn it off, anything else on.
func flagValue(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "0", "no", "off", "false":
		return false
	}
	return true
}

// reason returns the metric/log label of a rejection error.
func reason(err error) string {
	for _, e := range []error{ErrNotRegister, ErrNoTo, ErrToNotSIP, ErrToNoUser, ErrNoDomain, ErrNoContact,
		ErrBadContact, ErrWildcard, ErrBadExpires, ErrNoCallID} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return "invalid"
}
