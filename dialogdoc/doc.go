// Package dialogdoc is the one codec for RFC 4235 dialog-info documents.
// It sits between the trackers and the engine: dialoginfo builds the
// documents it publishes for calls (Build), bla parses the documents its
// phones NOTIFY and relays them merged into full state (Parse, Merge,
// Document.FullDocument), and pua asks whether a document it publishes
// holds only terminated dialogs (AllTerminated), which Kamailio's presence
// module never updates.
//
// Every reader shares one set of safety limits, those of internal/xmllimit
// (shared with pidf): a size cap, a nesting depth, and no DOCTYPE or other
// declaration, so no entity is ever defined or expanded.
package dialogdoc

import "github.com/puaside/puaside/internal/xmllimit"

// ContentType is the media type of dialog-info documents.
const ContentType = "application/dialog-info+xml"

// Namespace is the RFC 4235 XML namespace.
const Namespace = "urn:ietf:params:xml:ns:dialog-info"

// DefaultMaxSize is the size cap of a parsed document unless the caller
// gives another.
const DefaultMaxSize = xmllimit.DefaultMaxSize

// MaxDepth bounds element nesting; dialog-info needs 5 levels.
const MaxDepth = xmllimit.MaxDepth

// Document states (the dialog-info `state` attribute).
const (
	DocFull    = "full"
	DocPartial = "partial"
)
