// Package event holds the normalised events that flow from ingest to the
// trackers (usrloc, dialoginfo, bla). It has no behaviour: ingest produces
// these values from mirrored SIP, HEP or JSON input, and the trackers consume
// them. Keeping them here lets the trackers stay independent of one another
// and of the input format.
package event

import (
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Source says how a message reached puaside.
type Source int

// Sources of mirrored traffic.
const (
	// SourceReplicate is a t_replicate copy: a statement, already answered 200 by ingest.
	SourceReplicate Source = iota + 1
	// SourceTrace is a siptrace/tracer plain copy: an observation, never answered.
	SourceTrace
	// SourceHEP is a HEPv3 encapsulated copy: an observation, never answered.
	SourceHEP
	// SourceJSON is a JSON event posted to the HTTP API.
	SourceJSON
)

// String returns the metric/log label of the source.
func (s Source) String() string {
	switch s {
	case SourceReplicate:
		return "replicate"
	case SourceTrace:
		return "trace"
	case SourceHEP:
		return "hep"
	case SourceJSON:
		return "json"
	}
	return "unknown"
}

// SIP is one mirrored SIP message, parsed, deduplicated and trusted.
type SIP struct {
	// Msg is a *sip.Request or a *sip.Response.
	Msg sip.Message
	// Source is the input the message came from.
	Source Source
	// Src and Dst are the original addresses when known (HEP, X-Siptrace
	// headers); otherwise Src is the sender of the copy and Dst is invalid.
	Src, Dst netip.AddrPort
	// Time is the capture time (HEP timestamp) or the arrival time.
	Time time.Time
}

// Contact is one binding of an AoR, as stated by an input.
type Contact struct {
	// URI is the contact URI (without angle brackets or header params).
	URI string
	// Expires is the binding lifetime in seconds; -1 means not stated
	// (the tracker applies its own default), 0 means removal.
	Expires int
	// Q is the q value in [0,1]; -1 means not stated.
	Q float64
	// CallID and CSeq identify the REGISTER that created the binding, when known.
	CallID string
	CSeq   uint32
	// Received is the source address the registrar saw (NAT), when known.
	Received string
	// Instance is the +sip.instance value, when present.
	Instance string
	// RegID is the reg-id value (RFC 5626: with Instance, the identity
	// of one flow of the device), when present.
	RegID string
	// UserAgent is the User-Agent of the registering device, when known.
	UserAgent string
}

// Registration is a normalised registration event from a JSON input.
// (SIP REGISTER copies reach the usrloc tracker as SIP values.)
type Registration struct {
	// AoR is the address of record, e.g. "sip:alice@example.com" or "alice".
	AoR string
	// Contacts are the bindings the event talks about.
	Contacts []Contact
	// Complete is true when Contacts is the complete binding set of the AoR
	// (contacts not listed are gone).
	Complete bool
	// RemoveAll removes every binding of the AoR.
	RemoveAll bool
	// Publish is non-nil when the event sets the per-user publishing flag.
	Publish *bool
	// Source is where the event came from.
	Source Source
	// Time is when the event happened.
	Time time.Time
}

// DialogState is a normalised call-state event from a JSON input (for
// example OpenSIPS E_DLG_STATE_CHANGED). SIP copies of calls reach the
// dialoginfo tracker as SIP values.
type DialogState struct {
	CallID  string
	FromTag string
	ToTag   string
	// From, To and RequestURI are SIP URIs of the caller, callee and the
	// original Request-URI (optional).
	From       string
	To         string
	RequestURI string
	// FromDisplay and ToDisplay are display names (optional).
	FromDisplay string
	ToDisplay   string
	// State is one of trying, proceeding, early, confirmed, terminated.
	State string
	// Event is the RFC 4235 state event for terminated (cancelled, rejected,
	// local-bye, remote-bye, timeout, ...), optional.
	Event string
	// Code is the SIP status that caused the state, 0 if unknown.
	Code int
	// Hold is true when the call is on hold.
	Hold bool
	// Source is where the event came from.
	Source Source
	// Time is when the event happened.
	Time time.Time
}
