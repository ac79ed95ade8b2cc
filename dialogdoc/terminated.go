package dialogdoc

import (
	"encoding/xml"
	"errors"
	"io"
	"strings"

	"github.com/puaside/puaside/internal/xmllimit"
)

// AllTerminated reports whether body is a dialog-info document whose
// dialogs all carry the state "terminated" (at least one dialog with a
// state). Kamailio's presence module (5.x, update_presentity) does not
// update a stored dialog publication holding such a document: it answers a
// modify or refresh 200 with a fresh SIP-ETag that it never stores and
// keeps the old document and expiry, so the new state never reaches the
// watchers and the next request meets 412. The engine therefore replaces
// such a publication (removal, then a new initial PUBLISH) instead of
// modifying or refreshing it.
//
// The reader is lenient, as Kamailio's libxml2 is, but keeps the package's
// limits: a document over DefaultMaxSize, nested deeper than MaxDepth or
// with a declaration is not terminated.
//
// The rule follows Kamailio's (state elements of the root's dialog
// children), with surrounding blanks and case ignored so that a document
// Kamailio counts as terminated is never missed. Anything unparsable is not
// terminated.
func AllTerminated(body []byte) bool {
	if len(body) == 0 || len(body) > DefaultMaxSize || !containsFold(body, "terminated") {
		return false
	}
	if all, ok := scanTerminated(body); ok {
		return all
	}
	return decodeTerminated(body)
}

// containsFold reports whether b contains word (lower-case ASCII), ignoring
// ASCII case, without allocating.
func containsFold(b []byte, word string) bool {
	for i := 0; i+len(word) <= len(b); i++ {
		j := 0
		for j < len(word) && b[i+j]|0x20 == word[j] {
			j++
		}
		if j == len(word) {
			return true
		}
	}
	return false
}

// decodeTerminated is AllTerminated through encoding/xml: the reference,
// used for every document scanTerminated does not take.
func decodeTerminated(body []byte) bool {
	d := xmllimit.NewDecoder(body, false)
	depth, seen := 0, false
	inDialog, inState := false, false
	var state strings.Builder
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return seen
		}
		if err != nil {
			return false
		}
		switch t := tok.(type) {
		case xml.Directive:
			return false
		case xml.StartElement:
			depth++
			if depth > MaxDepth {
				return false
			}
			// depth 1 root, 2 dialog, 3 state.
			if depth == 2 {
				inDialog = t.Name.Local == "dialog"
			}
			if depth == 3 && inDialog && t.Name.Local == "state" {
				inState = true
				state.Reset()
			}
		case xml.EndElement:
			if depth == 3 && inState {
				inState = false
				if !strings.EqualFold(strings.TrimSpace(state.String()), "terminated") {
					return false
				}
				seen = true
			}
			depth--
		case xml.CharData:
			if inState && state.Len() < 64 {
				state.Write(t)
			}
		}
	}
}
