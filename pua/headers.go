package pua

import "strings"

// ReservedHeader reports whether name (any case, full or compact form) is a
// header the engine sets itself for every PUBLISH and SUBSCRIBE —
// addressing, transaction, dialog, lease, body and authentication (RFC 3261
// §7.3.3 and §20, RFC 6665, RFC 3903) — which an extra header may not carry:
// it would duplicate or contradict the engine's and could break the request
// or hijack its transaction. canon is the header's full name.
func ReservedHeader(name string) (canon string, reserved bool) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "via", "v":
		canon = "Via"
	case "call-id", "i":
		canon = "Call-ID"
	case "cseq":
		canon = "CSeq"
	case "content-length", "l":
		canon = "Content-Length"
	case "content-type", "c":
		canon = "Content-Type"
	case "content-encoding", "e":
		canon = "Content-Encoding"
	case "from", "f":
		canon = "From"
	case "to", "t":
		canon = "To"
	case "contact", "m":
		canon = "Contact"
	case "max-forwards":
		canon = "Max-Forwards"
	case "route":
		canon = "Route"
	case "record-route":
		canon = "Record-Route"
	case "expires":
		canon = "Expires"
	case "min-expires":
		canon = "Min-Expires"
	case "event", "o":
		canon = "Event"
	case "allow-events", "u":
		canon = "Allow-Events"
	case "supported", "k":
		canon = "Supported"
	case "sip-if-match":
		canon = "SIP-If-Match"
	case "sip-etag":
		canon = "SIP-ETag"
	case "subscription-state":
		canon = "Subscription-State"
	case "authorization":
		canon = "Authorization"
	case "proxy-authorization":
		canon = "Proxy-Authorization"
	default:
		return "", false
	}
	return canon, true
}
