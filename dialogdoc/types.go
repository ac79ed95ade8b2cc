package dialogdoc

import "strings"

// Document is one dialog-info document.
type Document struct {
	// Version is the document version.
	Version uint64
	// HasVersion is false when a parsed root has no version attribute
	// (required by RFC 4235, but then versions cannot be compared). Build
	// always writes the version.
	HasVersion bool
	// State is DocFull or DocPartial. Build always writes a full document.
	State string
	// Entity is the monitored URI.
	Entity string
	// Dialogs are the document's dialogs, in document order.
	Dialogs []Dialog

	// root is a parsed root element's start tag as written, rootName its
	// name.
	root     []byte
	rootName string
	// namespaces are the namespace declarations of a parsed root.
	namespaces map[string]string
}

// Namespaces returns the namespace declarations of a parsed document's root
// element (prefix → URI; "" is the default namespace), which its dialogs'
// elements may rely on: Compose declares them again. Nil for none.
func (d *Document) Namespaces() map[string]string { return d.namespaces }

// Dialog is one <dialog> element. Parse fills the fields a reader needs
// (ids, direction, state, line index, hold, the element as written); Build
// renders the ids, direction, state with its event and code, and the
// participants.
type Dialog struct {
	// ID is the dialog id attribute (required).
	ID string
	// CallID, LocalTag, RemoteTag and Direction ("initiator" or
	// "recipient") are the optional attributes.
	CallID, LocalTag, RemoteTag, Direction string
	// State is trying, proceeding, early, confirmed or terminated; Parse
	// lowercases it (other tokens are kept as they are).
	State string
	// Event and Code qualify the state (omitted when empty / 0). Built only.
	Event string
	Code  int
	// Local and Remote are the participants; nil omits the element. Parse
	// fills Remote's identity and display name only (Local is built only).
	Local, Remote *Participant
	// LineID is the line (appearance) index: the x-line-id param of
	// <local><target> (pval or pvalue spelling), else an <appearance>
	// child of <dialog> (draft-anil-sipping-bla-04, RFC 7463). Empty: none.
	// Parsed only.
	LineID string
	// Held is true when <local><target> has +sip.rendering = no. Parsed
	// only.
	Held bool
	// Raw is the <dialog> element as written in a parsed document.
	Raw []byte
}

// Participant is a <local> or <remote> element.
type Participant struct {
	// Identity is the participant's AoR; Display its display name (optional).
	Identity string
	Display  string
	// Target is the target URI (Contact when known, else the AoR).
	Target string
	// Rendering, when not empty, adds <param pname="+sip.rendering" pval=.../>.
	Rendering string
}

// OnHold reports whether the local party holds the dialog
// (+sip.rendering = no on its target): Held for a parsed dialog, the local
// participant's Rendering for one to be built.
func (d Dialog) OnHold() bool {
	return d.Held || d.Local != nil && strings.EqualFold(strings.TrimSpace(d.Local.Rendering), "no")
}

// Holds reports whether the dialog occupies its line index: it is trying,
// proceeding, early or confirmed.
func (d Dialog) Holds() bool {
	switch d.State {
	case "trying", "proceeding", "early", "confirmed":
		return true
	}
	return false
}

// Partial reports whether the document is a partial update (RFC 4235
// §4.1) to be merged into the state it follows.
func (d *Document) Partial() bool { return d.State == DocPartial }
