package ingest

import (
	"bytes"
	"fmt"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/internal/sipwrite"
)

// Drop reasons of input over a length bound (config max_uri_length,
// max_callid_length, max_tag_length, max_header_length).
const (
	reasonURITooLong    = "uri_too_long"
	reasonCallIDTooLong = "callid_too_long"
	reasonTagTooLong    = "tag_too_long"
	reasonHeaderTooLong = "header_too_long"
)

// tooLong is an input value over its length bound.
type tooLong struct {
	reason string // drop reason
	what   string // the value, e.g. "From URI"
	n, max int    // its length and the bound, in bytes
}

func (e *tooLong) Error() string {
	return fmt.Sprintf("%s is %d bytes long, more than %d", e.what, e.n, e.max)
}

// over returns a tooLong when n exceeds max (0 = no bound).
func over(reason, what string, n, max int) *tooLong {
	if max > 0 && n > max {
		return &tooLong{reason: reason, what: what, n: n, max: max}
	}
	return nil
}

// checkHeaderLines bounds every header line of a raw SIP message (name and
// value, folded continuation lines included), before it is parsed. The
// start line is left to the Request-URI bound; the body is not looked at.
func (c *Config) checkHeaderLines(b []byte) *tooLong {
	if c.MaxHeaderLength <= 0 {
		return nil
	}
	// Skip the start line.
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil
	}
	b = b[i+1:]
	cur := 0 // length of the header being read
	for len(b) > 0 {
		j := bytes.IndexByte(b, '\n')
		line := b
		if j >= 0 {
			line, b = b[:j], b[j+1:]
		} else {
			b = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			return nil // end of headers
		}
		if line[0] == ' ' || line[0] == '\t' {
			cur += len(line)
		} else {
			cur = len(line)
		}
		if cur > c.MaxHeaderLength {
			name, _, _ := bytes.Cut(line, []byte{':'})
			if line[0] == ' ' || line[0] == '\t' {
				name = []byte("folded")
			}
			return over(reasonHeaderTooLong, "header "+printable(name, 32), cur, c.MaxHeaderLength)
		}
	}
	return nil
}

// printable is at most n bytes of b for a log line, non-printable bytes
// replaced.
func printable(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c >= 0x7f {
			c = '?'
		}
		out[i] = c
	}
	return string(out)
}

// checkMirror bounds the parsed fields of a SIP copy: the Request-URI, the
// From, To and Contact URIs, the Call-ID and the From and To tags.
func (c *Config) checkMirror(m *mirrored) *tooLong {
	if e := over(reasonCallIDTooLong, "Call-ID", len(m.callID), c.MaxCallIDLength); e != nil {
		return e
	}
	if e := over(reasonTagTooLong, "From tag", len(m.fromTag), c.MaxTagLength); e != nil {
		return e
	}
	if e := over(reasonTagTooLong, "To tag", len(m.toTag), c.MaxTagLength); e != nil {
		return e
	}
	if c.MaxURILength <= 0 {
		return nil
	}
	if m.req != nil {
		if e := over(reasonURITooLong, "Request-URI", sipwrite.URILen(&m.req.Recipient), c.MaxURILength); e != nil {
			return e
		}
	}
	if e := over(reasonURITooLong, "From URI", sipwrite.URILen(&m.msg.From().Address), c.MaxURILength); e != nil {
		return e
	}
	if e := over(reasonURITooLong, "To URI", sipwrite.URILen(&m.msg.To().Address), c.MaxURILength); e != nil {
		return e
	}
	hs, ok := m.msg.(interface{ Headers() []sip.Header })
	if !ok {
		return nil
	}
	for _, h := range hs.Headers() {
		if ch, ok := h.(*sip.ContactHeader); ok {
			if e := over(reasonURITooLong, "Contact URI", sipwrite.URILen(&ch.Address), c.MaxURILength); e != nil {
				return e
			}
		}
	}
	return nil
}

// checkRegistration bounds a registration posted as JSON: the AoR and
// contact URIs, the Call-IDs, and the other contact values as header values.
func (c *Config) checkRegistration(r *event.Registration) *tooLong {
	if e := over(reasonURITooLong, "aor", len(r.AoR), c.MaxURILength); e != nil {
		return e
	}
	for i := range r.Contacts {
		ct := &r.Contacts[i]
		for _, e := range []*tooLong{
			over(reasonURITooLong, "contact uri", len(ct.URI), c.MaxURILength),
			over(reasonCallIDTooLong, "contact call_id", len(ct.CallID), c.MaxCallIDLength),
			over(reasonURITooLong, "contact received", len(ct.Received), c.MaxURILength),
			over(reasonHeaderTooLong, "contact instance", len(ct.Instance), c.MaxHeaderLength),
			over(reasonHeaderTooLong, "contact user_agent", len(ct.UserAgent), c.MaxHeaderLength),
		} {
			if e != nil {
				return e
			}
		}
	}
	return nil
}

// checkDialog bounds a call state posted as JSON.
func (c *Config) checkDialog(d *event.DialogState) *tooLong {
	for _, e := range []*tooLong{
		over(reasonCallIDTooLong, "call_id", len(d.CallID), c.MaxCallIDLength),
		over(reasonTagTooLong, "from_tag", len(d.FromTag), c.MaxTagLength),
		over(reasonTagTooLong, "to_tag", len(d.ToTag), c.MaxTagLength),
		over(reasonURITooLong, "from", len(d.From), c.MaxURILength),
		over(reasonURITooLong, "to", len(d.To), c.MaxURILength),
		over(reasonURITooLong, "request_uri", len(d.RequestURI), c.MaxURILength),
		over(reasonHeaderTooLong, "from_display", len(d.FromDisplay), c.MaxHeaderLength),
		over(reasonHeaderTooLong, "to_display", len(d.ToDisplay), c.MaxHeaderLength),
	} {
		if e != nil {
			return e
		}
	}
	return nil
}
