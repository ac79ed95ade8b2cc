package pua

import (
	"bytes"
	"reflect"
	"strconv"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/internal/sipwrite"
)

// The engine's requests over UDP are rendered once, when their
// transaction starts (nictLayer.start). sipgo's Request.StringWrite costs
// more than the request's size calls for: every host goes through
// net.ParseIP (whose error for a host name allocates), the body is copied
// into a string, and parameters and numbers are formatted into
// intermediate strings. writeRequest renders the requests the engine
// builds itself straight into the buffer, with the same bytes (URIs and
// parameters as internal/sipwrite writes them).

// genericHeaderType is the type of the headers sip.NewHeader returns
// (and sipgo's parser, for a header it has no parser of its own for):
// their value is written as it is.
var genericHeaderType = reflect.TypeOf(sip.NewHeader("", ""))

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
		b.Write(sipwrite.AppendViaValue(b.AvailableBuffer(), h, h.Params))
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

// writeNameAddr writes a From, To or Contact value as sipgo does,
// declining a URI that is not a SIP or SIPS one.
func writeNameAddr(b *bytes.Buffer, display string, u *sip.Uri, params sip.HeaderParams) bool {
	if !sipURI(u) {
		return false
	}
	b.Write(sipwrite.AppendNameAddr(b.AvailableBuffer(), display, u, params))
	return true
}

// writeURI writes u as sipgo's Uri.StringWrite does, and reports whether
// u is a SIP or SIPS URI; any other is declined.
func writeURI(b *bytes.Buffer, u *sip.Uri) bool {
	if !sipURI(u) {
		return false
	}
	b.Write(sipwrite.AppendURI(b.AvailableBuffer(), u))
	return true
}

// sipURI reports whether u is a SIP or SIPS URI (no scheme means sip)
// held as parsed fields.
func sipURI(u *sip.Uri) bool {
	return (u.Scheme == "" || u.Scheme == "sip" || u.Scheme == "sips") && u.Raw() == ""
}

// writeInt writes v in decimal, as strconv.Itoa does.
func writeInt(b *bytes.Buffer, v int) {
	b.Write(strconv.AppendInt(b.AvailableBuffer(), int64(v), 10))
}
