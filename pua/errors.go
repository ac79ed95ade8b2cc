package pua

import "errors"

// Sentinel errors returned by the engine's request methods.
var (
	// ErrUnknownEvent is returned for an event package that is not registered.
	ErrUnknownEvent = errors.New("pua: unknown event")
	// ErrWrongETag is returned when PublishRequest.IfMatch does not equal the
	// record's current ETag.
	ErrWrongETag = errors.New("pua: wrong etag")
	// ErrNotFound is returned when removing or unsubscribing a record that does
	// not exist.
	ErrNotFound = errors.New("pua: no such record")
	// ErrReservedHeader is returned for an extra header that the engine sets
	// itself (Via, Call-ID, CSeq, From, To, Expires, ...; see ReservedHeader).
	ErrReservedHeader = errors.New("pua: reserved header")
	// ErrTooManyPublications is returned for a new publication of an owner
	// that already holds max_publications.
	ErrTooManyPublications = errors.New("pua: too many publications for this owner")
	// ErrStopped is returned for requests made after Stop.
	ErrStopped = errors.New("pua: engine stopped")
)
