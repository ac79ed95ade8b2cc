// Package pidf is the codec for RFC 3863 presence documents, beside
// dialogdoc for dialog-info. usrloc builds the registration state it
// publishes with it (one tuple per bound contact, or one closed tuple);
// the types carry notes (RFC 3863 <note>) so that documents composed from
// several publications can be expressed with them, and RFC 4480 activities
// of the person (the XMPP gateway's <show>). Parse reads a document back
// (NOTIFY bodies the XMPP gateway turns into XMPP presence).
//
// Its readers use the XML safety limits of internal/xmllimit (shared with
// dialogdoc).
package pidf

// ContentType is the media type of PIDF documents.
const ContentType = "application/pidf+xml"

// Namespace is the RFC 3863 XML namespace.
const Namespace = "urn:ietf:params:xml:ns:pidf"

// DataModelNamespace is the RFC 4479 data model namespace (<dm:person>).
const DataModelNamespace = "urn:ietf:params:xml:ns:pidf:data-model"

// RPIDNamespace is the RFC 4480 rich presence namespace (<rpid:activities>).
const RPIDNamespace = "urn:ietf:params:xml:ns:pidf:rpid"

// Basic statuses of a tuple.
const (
	Open   = "open"
	Closed = "closed"
)
