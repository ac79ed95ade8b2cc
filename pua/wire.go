package pua

import (
	"bytes"
	"net/netip"
	"reflect"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// The engine's requests over UDP are rendered once, when their
// transaction starts (nictLayer.start). sipgo's Request.StringWrite costs
// more than the request's size calls for: every host goes through
// net.ParseIP (whose error for a host name allocates), the body is copied
// into a string, and parameters and numbers are formatted into
// intermediate strings. writeRequest renders the requests the engine
// builds itself straight into the buffer, with the same bytes.

// genericHeaderType is the type of the headers sip.NewHeader returns
// (and sipgo's parser, for a header it has no parser of its own for):
// their value is written as it is.
var genericHeaderType = reflect.TypeOf(sip.NewHeader("", ""))

// quoteChars are the characters for which sipgo writes a parameter's
// value in double quotes (its parser's abnf).
const quoteChars = " \t"

// writeRequest writes req to b byte for byte as req.StringWrite would,
// and reports whether it could: it declines (returning false, having
// written something the caller discards) a request in compact-headers
// form, one with a URI that is not a SIP or SIPS URI, or with a header
// that is not one of the types the engine's requests carry (Via, From,
// To, Call-ID, CSeq, Max-Forwards, Expires, Content-Type, Content-Length,
// Contact, Route and the generic headers of sip.NewHeader) or is nil.
func writeRequest(b *bytes.Buffer, req *sip.Request) bool {
	if req.CompactHeaders {
		return false
	}
	b.WriteString(string(req.Method))
	b.WriteByte(' ')
	if !writeURI(b, &req.Recipient) {
		return false
	}
	b.WriteByte(' ')
	b.WriteString(req.SipVersion)
	b.WriteString("\r\n")
	hs := req.Headers()
	for _, h := range hs {
		if !writeHeader(b, h) {
			return false
		}
		b.WriteString("\r\n")
	}
	if len(hs) == 0 {
		// sipgo ends the header list with a CRLF even when it is empty.
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	b.Write(req.Body())
	return true
}

// writeHeader writes one header line without its CRLF, as sipgo's
// headers.StringWrite does, and reports whether h is of a type it knows.
func writeHeader(b *bytes.Buffer, h sip.Header) bool {
	switch h := h.(type) {
	case *sip.ViaHeader:
		if h == nil {
			return false
		}
		b.WriteString("Via: ")
		b.WriteString(h.ProtocolName)
		b.WriteByte('/')
		b.WriteString(h.ProtocolVersion)
		b.WriteByte('/')
		b.WriteString(h.Transport)
		b.WriteByte(' ')
		writeHost(b, h.Host)
		if h.Port > 0 {
			b.WriteByte(':')
			writeInt(b, h.Port)
		}
		writeHeaderParams(b, h.Params)
	case *sip.FromHeader:
		if h == nil {
			return false
		}
		b.WriteString("From: ")
		return writeNameAddr(b, h.DisplayName, &h.Address, h.Params)
	case *sip.ToHeader:
		if h == nil {
			return false
		}
		b.WriteString("To: ")
		return writeNameAddr(b, h.DisplayName, &h.Address, h.Params)
	case *sip.ContactHeader:
		if h == nil {
			return false
		}
		b.WriteString("Contact: ")
		if h.Address.Wildcard {
			b.WriteByte('*')
			return true
		}
		return writeNameAddr(b, h.DisplayName, &h.Address, h.Params)
	case *sip.RouteHeader:
		if h == nil {
			return false
		}
		b.WriteString("Route: <")
		if !writeURI(b, &h.Address) {
			return false
		}
		b.WriteByte('>')
	case *sip.CallIDHeader:
		if h == nil {
			return false
		}
		b.WriteString("Call-ID: ")
		b.WriteString(string(*h))
	case *sip.CSeqHeader:
		if h == nil {
			return false
		}
		b.WriteString("CSeq: ")
		writeInt(b, int(h.SeqNo))
		b.WriteByte(' ')
		b.WriteString(string(h.MethodName))
	case *sip.MaxForwardsHeader:
		if h == nil {
			return false
		}
		b.WriteString("Max-Forwards: ")
		writeInt(b, int(*h))
	case *sip.ExpiresHeader:
		if h == nil {
			return false
		}
		b.WriteString("Expires: ")
		writeInt(b, int(*h))
	case *sip.ContentLengthHeader:
		if h == nil {
			return false
		}
		b.WriteString("Content-Length: ")
		writeInt(b, int(*h))
	case *sip.ContentTypeHeader:
		if h == nil {
			return false
		}
		b.WriteString("Content-Type: ")
		b.WriteString(string(*h))
	default:
		if reflect.TypeOf(h) != genericHeaderType || reflect.ValueOf(h).IsNil() {
			return false
		}
		b.WriteString(h.Name())
		b.WriteString(": ")
		b.WriteString(h.Value())
	}
	return true
}

// writeNameAddr writes a From, To or Contact value as sipgo does: the
// display name in double quotes as it is, the URI in angle brackets, then
// the parameters.
func writeNameAddr(b *bytes.Buffer, display string, u *sip.Uri, params sip.HeaderParams) bool {
	if display != "" {
		b.WriteByte('"')
		b.WriteString(display)
		b.WriteString("\" ")
	}
	b.WriteByte('<')
	if !writeURI(b, u) {
		return false
	}
	b.WriteByte('>')
	writeHeaderParams(b, params)
	return true
}

// writeURI writes u as sipgo's Uri.StringWrite does, and reports whether
// u is a SIP or SIPS URI (no scheme means sip); any other is declined.
func writeURI(b *bytes.Buffer, u *sip.Uri) bool {
	switch u.Scheme {
	case "", "sip":
		b.WriteString("sip:")
	case "sips":
		b.WriteString("sips:")
	default:
		return false
	}
	if u.Raw() != "" {
		return false
	}
	if u.HierarhicalSlashes {
		b.WriteString("//")
	}
	if u.User != "" {
		b.WriteString(u.User)
		if u.Password != "" {
			b.WriteByte(':')
			b.WriteString(u.Password)
		}
		b.WriteByte('@')
	}
	writeHost(b, u.Host)
	if u.Port > 0 {
		b.WriteByte(':')
		writeInt(b, u.Port)
	}
	if len(u.UriParams) > 0 {
		b.WriteByte(';')
		writeParams(b, ';', u.UriParams)
	}
	if len(u.Headers) > 0 {
		b.WriteByte('?')
		writeParams(b, '&', u.Headers)
	}
	return true
}

// writeHeaderParams writes a header's parameters after a ';', if it has
// any.
func writeHeaderParams(b *bytes.Buffer, ps sip.HeaderParams) {
	if len(ps) > 0 {
		b.WriteByte(';')
		writeParams(b, ';', ps)
	}
}

// writeParams writes ps separated by sep as sipgo's HeaderParams.ToString
// and ToStringWrite do: a key alone when its value is empty, the value in
// double quotes (as it is) when it holds a space or a tab.
func writeParams(b *bytes.Buffer, sep byte, ps sip.HeaderParams) {
	for i, kv := range ps {
		if i > 0 {
			b.WriteByte(sep)
		}
		b.WriteString(kv.K)
		switch {
		case kv.V == "":
		case strings.ContainsAny(kv.V, quoteChars):
			b.WriteString("=\"")
			b.WriteString(kv.V)
			b.WriteByte('"')
		default:
			b.WriteByte('=')
			b.WriteString(kv.V)
		}
	}
}

// writeHost writes a URI's or a Via's host as sipgo does: in square
// brackets when it is an IPv6 address (for which sipgo's check is
// net.ParseIP(host).To4() == nil: not IPv4, not IPv4-mapped, no zone),
// as it is otherwise.
func writeHost(b *bytes.Buffer, host string) {
	if bracketHost(host) {
		b.WriteByte('[')
		b.WriteString(host)
		b.WriteByte(']')
		return
	}
	b.WriteString(host)
}

// bracketHost reports whether host is an IPv6 address that sipgo writes
// in brackets. Only a host with a ':' and nothing but hex digits, ':' and
// '.' can be one, and only that is parsed (netip.ParseAddr, which
// net.ParseIP uses, without its allocation).
func bracketHost(host string) bool {
	if strings.IndexByte(host, ':') < 0 {
		return false
	}
	for i := 0; i < len(host); i++ {
		switch c := host[i]; {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F', c == ':', c == '.':
		default:
			return false
		}
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Zone() == "" && a.Is6() && !a.Is4In6()
}

// writeInt writes v in decimal, as strconv.Itoa does.
func writeInt(b *bytes.Buffer, v int) {
	var num [20]byte
	b.Write(strconv.AppendInt(num[:0], int64(v), 10))
}
