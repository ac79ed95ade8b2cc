// Package xmltext writes XML character data escaped, byte for byte as
// encoding/xml's EscapeText does, without the copy of the string to a byte
// slice that EscapeText needs. It sits below the document builders
// (dialogdoc, pidf, pa's watcherinfo), at the bottom of the flow.
package xmltext

import (
	"bytes"
	"encoding/xml"
)

// Escape writes s to b escaped as XML character data. A string of
// printable ASCII without a character to escape (an entity, a tuple id, a
// Call-ID, a URI: nearly all) is written as it is.
func Escape(b *bytes.Buffer, s string) {
	if plain(s) {
		b.WriteString(s)
		return
	}
	_ = xml.EscapeText(b, []byte(s)) // writes to a bytes.Buffer never fail
}

// plain reports whether xml.EscapeText would write s unchanged: printable
// ASCII only, none of " ' & < >.
func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7e:
			return false
		case c == '"' || c == '\'' || c == '&' || c == '<' || c == '>':
			return false
		}
	}
	return true
}
