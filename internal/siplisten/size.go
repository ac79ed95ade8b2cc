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

// RequestSize returns the size of req on the wire, or an upper estimate
// when that is clearly below the UDP limit (rendering costs more than the
// estimate).
func RequestSize(req *sip.Request) int {
	n := len(req.Body()) + 64 + 2*len(req.Recipient.User+req.Recipient.Host)
	for _, h := range req.Headers() {
		n += len(h.Name()) + 4
		switch h.(type) {
		case *sip.FromHeader, *sip.ToHeader, *sip.ContactHeader, *sip.RouteHeader, *sip.ViaHeader:
			n += 200
		default:
			n += len(h.Value())
		}
	}
	if n < 700 {
		return n
	}
	var c byteCounter
	req.StringWrite(&c)
	return int(c)
}

// byteCounter counts the bytes written to it.
type byteCounter int

// WriteString counts s.
func (c *byteCounter) WriteString(s string) (int, error) {
	*c += byteCounter(len(s))
	return len(s), nil
}
