package siplisten

import "github.com/emiago/sipgo/sip"

// MaxUDPRequest is the request size above which a request goes over TCP
// instead of UDP (RFC 3261 §18.1.1: 1300 bytes when the path MTU is
// unknown; sipgo refuses UDP messages above UDPMTUSize-200).
const MaxUDPRequest = 1300

// viaRoom is room for the Via the transaction layer adds when it sends.
const viaRoom = 120

// TooLargeForUDP reports whether req, with the Via still to be added, is
// over MaxUDPRequest: such a request goes over TCP to the same address.
func TooLargeForUDP(req *sip.Request) bool {
	return RequestSize(req)+viaRoom > MaxUDPRequest
}

// RequestSize returns the size of req on the wire, or an upper bound of
// it when that bound, with the Via still to be added, is within
// MaxUDPRequest (rendering costs more than the bound: a request of the
// engine's is rendered once, when it is sent).
func RequestSize(req *sip.Request) int {
	n := len(req.Method) + uriBound(&req.Recipient) + 16 // " SIP/2.0\r\n", blank line
	n += len(req.Body()) + 24                            // Content-Length, when added
	for _, h := range req.Headers() {
		n += len(h.Name()) + 4 // ": ", CRLF
		switch h := h.(type) {
		case *sip.FromHeader:
			n += addressBound(h.DisplayName, &h.Address, h.Params)
		case *sip.ToHeader:
			n += addressBound(h.DisplayName, &h.Address, h.Params)
		case *sip.ContactHeader:
			n += addressBound(h.DisplayName, &h.Address, h.Params)
		case *sip.RouteHeader:
			n += uriBound(&h.Address) + 2
		case *sip.RecordRouteHeader:
			n += uriBound(&h.Address) + 2
		case *sip.ViaHeader:
			n += len(h.ProtocolName) + len(h.ProtocolVersion) + len(h.Transport) + 3 +
				len(h.Host) + 2 + portBound + paramsBound(h.Params)
		case *sip.CSeqHeader:
			n += 11 + len(h.MethodName) // uint32, space, method
		case *sip.CallIDHeader:
			n += len(*h)
		case *sip.MaxForwardsHeader, *sip.ExpiresHeader, *sip.ContentLengthHeader:
			n += 10 // uint32
		case *sip.ContentTypeHeader:
			n += len(*h)
		default:
			n += len(h.Value())
		}
	}
	if n+viaRoom <= MaxUDPRequest {
		return n
	}
	var c byteCounter
	req.StringWrite(&c)
	return int(c)
}

// portBound is room for ":" and a port number.
const portBound = 21

// uriBound is at least the length of u on the wire.
func uriBound(u *sip.Uri) int {
	return len(u.Scheme) + 4 + len(u.Raw()) + 2 + len(u.User) + len(u.Password) + 2 +
		len(u.Host) + 2 + portBound + paramsBound(u.UriParams) + paramsBound(u.Headers)
}

// addressBound is at least the length of a name-addr header value.
func addressBound(display string, u *sip.Uri, params sip.HeaderParams) int {
	return 2*len(display) + 4 + uriBound(u) + 2 + paramsBound(params)
}

// paramsBound is at least the length of a parameter list on the wire,
// its leading separator included.
func paramsBound(ps sip.HeaderParams) int {
	n := 1
	for _, kv := range ps {
		n += len(kv.K) + len(kv.V) + 4
	}
	return n
}

// byteCounter counts the bytes written to it.
type byteCounter int

// WriteString counts s.
func (c *byteCounter) WriteString(s string) (int, error) {
	*c += byteCounter(len(s))
	return len(s), nil
}
