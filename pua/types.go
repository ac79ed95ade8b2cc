package pua

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Key identifies a publication: presentity URI, event package and the
// caller-chosen id (Kamailio's pres_id), e.g. "usrloc".
type Key struct {
	PresURI string
	Event   string
	ID      string
}

// SubKey identifies a subscription: presentity URI, watcher URI, event
// package and the caller-chosen id.
type SubKey struct {
	PresURI    string
	WatcherURI string
	Event      string
	ID         string
}

// Header is one extra SIP header added to a request.
type Header struct {
	Name  string
	Value string
}

// Source flags: which component owns a record. The values are Kamailio's
// `flag` column bits (pua hash.h), so the pua table stays Kamailio-compatible.
const (
	FlagUsrloc        = 1    // UL_PUBLISH
	FlagBLAPublish    = 2    // BLA_PUBLISH
	FlagBLASubscribe  = 4    // BLA_SUBSCRIBE
	FlagXMPPPublish   = 8    // XMPP_PUBLISH
	FlagXMPPSubscribe = 16   // XMPP_SUBSCRIBE
	FlagXMPPWinfo     = 32   // XMPP_INITIAL_SUBS (pua_xmpp's presence.winfo subscriptions)
	FlagRPCPublish    = 64   // RPC_PUBLISH
	FlagRPCSubscribe  = 256  // RPC_SUBSCRIBE
	FlagDialogPublish = 1024 // DIALOG_PUBLISH
)

// PublishRequest is the desired state of a publication. The engine makes
// the presence server converge to it: initial PUBLISH, then modify or
// refresh, coalescing changes made while a request is in flight.
type PublishRequest struct {
	Key
	// Body is the event state document. It must not be empty.
	Body []byte
	// ContentType overrides the event's default content type.
	ContentType string
	// Expires is the Expires value asked for on each PUBLISH; 0 means the
	// engine's default_expires.
	Expires time.Duration
	// Lifetime bounds how long the publication is kept alive by refreshes;
	// 0 means until Remove. At its end the publication is removed
	// (PUBLISH Expires: 0), except a dialog document whose dialogs are all
	// terminated (not dialog;sla): that one is neither refreshed nor
	// removed, and is dropped once the server holds it, its copy there
	// lapsing at its Expires. That same document published again keeps
	// the end (and the Expires) it was first given.
	Lifetime time.Duration
	// ExtraHeaders are added to every PUBLISH of this record (e.g. Sender).
	ExtraHeaders []Header
	// OutboundProxy overrides the engine's outbound_proxy for this record.
	OutboundProxy string
	// Flag is the owner's source flag (FlagUsrloc, ...): 32 bits, as the
	// pua table's flag column holds.
	Flag int
	// IfMatch, when set, must equal the record's current ETag (management
	// API callers that name an etag, as pua_mi allows); otherwise the request
	// is refused with ErrWrongETag.
	IfMatch string
}

// SubscribeRequest asks the engine to hold a subscription open until
// Unsubscribe.
type SubscribeRequest struct {
	SubKey
	// Target is the Request-URI of the initial SUBSCRIBE; empty means PresURI.
	Target string
	// Expires is the requested subscription duration; 0 means default_expires.
	Expires time.Duration
	// OutboundProxy overrides the engine's outbound_proxy for this record.
	OutboundProxy string
	// ExtraHeaders are added to every SUBSCRIBE of this record.
	ExtraHeaders []Header
	// Contact overrides the engine's ContactURI in this record's SUBSCRIBEs
	// (pua_bla's server_address); NOTIFYs must still reach a listen socket.
	Contact string
	// Flag is the owner's source flag; NOTIFYs go to the handler registered
	// for this flag (see Engine.HandleNotify).
	Flag int
}

// Notify is a NOTIFY received within one of the engine's subscriptions.
type Notify struct {
	Key SubKey
	// State is the Subscription-State value: active, pending or terminated.
	State string
	// Reason is the Subscription-State reason parameter, if any.
	Reason string
	// Expires is the Subscription-State expires parameter; -1 if absent.
	Expires int
	// ContentType and Body are the NOTIFY's body.
	ContentType string
	Body        []byte
	// Contact is the NOTIFY's Contact URI (the notifier's address).
	Contact string
	// From and To are the NOTIFY's From and To URIs.
	From, To string
	// Headers gives access to any other header of the NOTIFY (case-insensitive name).
	Headers func(name string) string
}

// NotifyHandler is called for each NOTIFY of a subscription owned by the
// registered flag. It returns the SIP status code and reason phrase that the
// engine sends back (200 "OK" in the common case; 409 for a refused BLA
// seize; 400 for a malformed body). It must not block for long.
type NotifyHandler func(ctx context.Context, n Notify) (code int, reason string)

// Result is the outcome of one PUBLISH or SUBSCRIBE transaction.
type Result struct {
	// Status and Reason are the final SIP response (0 when none arrived).
	Status int
	Reason string
	// ETag is the SIP-ETag of a 2xx to PUBLISH.
	ETag string
	// Expires is the granted Expires of a 2xx.
	Expires time.Duration
	// RetryAfter is the Retry-After of a 503 (seconds form), 0 if none.
	RetryAfter time.Duration
	// Err is a transport error or timeout, if any.
	Err error
}

// State of a record as shown by listings and metrics.
const (
	StatePending  = "pending"  // not yet accepted by the server
	StateActive   = "active"   // accepted, refreshed before expiry
	StateRetrying = "retrying" // failed transiently, backing off
	StateFailed   = "failed"   // refused by the server, tried again after refused_retry_min..max or at the next change
	StateRemoving = "removing" // removal in flight
)

// StateCount is the number of records of one event package in one state.
type StateCount struct {
	Event, State string
	N            int
}

// PublicationInfo is a snapshot of one publication record.
type PublicationInfo struct {
	Key          Key
	Flag         int
	ContentType  string
	Body         []byte
	ETag         string
	State        string
	LastStatus   int
	LastReason   string
	Expires      time.Time // when the server's copy expires
	NextRefresh  time.Time
	ExtraHeaders []Header
	// NextRetry is when a refused (failed) publication is tried again;
	// zero otherwise.
	NextRetry time.Time
	// Refusals counts the refusals in a row since the last acceptance or
	// change of state.
	Refusals int
}

// SubscriptionInfo is a snapshot of one subscription record.
type SubscriptionInfo struct {
	Key           SubKey
	Flag          int
	Target        string
	State         string
	LastStatus    int
	LastReason    string
	Expires       time.Time
	CallID        string
	LocalTag      string
	RemoteTag     string
	LastNotify    time.Time
	LastNotifyCT  string
	LastNotifyDoc []byte
	// NextRetry is when a refused (failed) subscription is tried again;
	// zero otherwise.
	NextRetry time.Time
	// Refusals counts the refusals in a row since the last acceptance or
	// change of parameters.
	Refusals int
}

// Record is the engine's snapshot of one publication or subscription, as
// it hands it to the Store and gets it back after a restart. Publications
// leave the subscription fields empty and vice versa. How it maps to the
// columns of Kamailio's pua table (event bits, header lines) is the store's
// business.
type Record struct {
	PresURI        string
	PresID         string
	EventName      string // the event package name, e.g. "dialog;sla"
	Expires        int64  // absolute Unix time
	DesiredExpires int64  // absolute Unix time, 0 = forever
	Flag           int
	ETag           string
	TupleID        string
	WatcherURI     string
	CallID         string
	ToTag          string
	FromTag        string
	CSeq           int
	RecordRoute    string
	Contact        string
	RemoteContact  string
	Version        int
	ExtraHeaders   []Header
	Body           []byte
	ContentType    string
	OutboundProxy  string
	ReqExpires     int64 // Expires asked on each request, seconds (0 = default)
	// Target is where a subscription's initial SUBSCRIBE goes: its
	// owner's SubscribeRequest.Target, else PresURI. Empty in a row
	// written without it (by Kamailio or an earlier version): a restart
	// then puts RemoteContact in its place.
	Target string
	// Removing marks a record whose removal (PUBLISH Expires: 0, or
	// SUBSCRIBE Expires: 0) was decided but not yet answered: a restarted
	// engine finishes it instead of refreshing the record.
	Removing bool
	// Modified marks a publication whose stored body the server has not
	// yet accepted under the stored ETag: a restarted engine sends it as a
	// modify instead of refreshing the server's older document.
	Modified bool
	// Shard and Epoch fence the write with several instances on one
	// database: with Epoch non-zero the store writes (or deletes) the row
	// only while the lease of Shard has that epoch, so an owner that lost
	// the shard cannot overwrite its successor's rows. Not stored.
	Shard int
	Epoch int64
}

// ErrStaleEpoch is wrapped by a StaleEpochError.
var ErrStaleEpoch = errors.New("stale shard epoch")

// StaleEpochError is returned by Store.SaveRecords when records were
// refused because the lease of their shard has another epoch than the one
// they carry (the shard has a new owner). Every other record was written:
// the refused ones must not be retried.
type StaleEpochError struct {
	// Shards are the shards whose records were refused.
	Shards []int
	// Refused is the number of records refused.
	Refused int
}

func (e *StaleEpochError) Error() string {
	return fmt.Sprintf("%d record(s) of shard(s) %v refused: %v", e.Refused, e.Shards, ErrStaleEpoch)
}

// Unwrap returns ErrStaleEpoch.
func (e *StaleEpochError) Unwrap() error { return ErrStaleEpoch }

// IsSubscription reports whether the record is a subscription.
func (r Record) IsSubscription() bool { return r.WatcherURI != "" }

// Store persists engine records. Implemented by package store.
// The record identity is (pres_uri, pres_id, event_name, flag, watcher_uri).
type Store interface {
	// LoadRecords returns every stored record.
	LoadRecords(ctx context.Context) ([]Record, error)
	// SaveRecords upserts and deletes records in one transaction. A record
	// the database cannot hold is set aside by the store (logged and
	// counted, not written) and the call succeeds for the others: an error
	// means nothing could be written and the whole call must be retried,
	// except a *StaleEpochError: the others were written.
	SaveRecords(ctx context.Context, upsert []Record, remove []Record) error
}
