package dialogdoc

import (
	"bytes"
	"strings"
)

// scanTerminated is AllTerminated's fast path: a single pass over a
// document in the plain subset of XML that the trackers build and phones
// send (ASCII, quoted attributes, balanced and matching tags, a state
// holding text only, at most an <?xml?> declaration with version 1.0 and
// UTF-8). ok is false as soon as the document leaves that subset (a
// comment, CDATA, a DOCTYPE, an entity or character reference, a byte
// outside printable ASCII and blanks, an odd name, an unbalanced tag, over
// MaxDepth): decodeTerminated decides then. Where ok is true the answer is
// decodeTerminated's (FuzzScanTerminated checks it). It does not allocate.
func scanTerminated(b []byte) (all, ok bool) {
	var (
		stack    [MaxDepth][]byte
		depth    int
		seen     bool
		inDialog bool
	)
	i := 0
	skipBlanks := func() {
		for i < len(b) && isBlank(b[i]) {
			i++
		}
	}
	inState := func() bool { return depth == 3 && inDialog && string(stack[2]) == "state" }
	skipBlanks()
	if bytes.HasPrefix(b[i:], []byte("<?")) {
		end := bytes.Index(b[i+2:], []byte("?>"))
		if end < 0 || !plainDeclaration(b[i+2:i+2+end]) {
			return false, false
		}
		i += 2 + end + 2
	}
	for i < len(b) {
		if b[i] != '<' {
			// Character data up to the next tag.
			start := i
			for i < len(b) && b[i] != '<' {
				if !plainText(b[i]) || b[i] == '&' {
					return false, false
				}
				i++
			}
			text := b[start:i]
			if bytes.Contains(text, []byte("]]>")) {
				return false, false
			}
			if depth == 0 && len(bytes.TrimLeft(text, " \t\r\n")) != 0 {
				return false, false
			}
			if inState() && bytes.IndexByte(text, '>') >= 0 {
				return false, false // stateClosedTerminated reads the text back from the last '>'
			}
			continue
		}
		i++
		if i >= len(b) || b[i] == '!' || b[i] == '?' {
			return false, false
		}
		if b[i] == '/' {
			i++
			name, n := scanName(b[i:])
			if n == 0 || depth == 0 || !bytes.Equal(name, stack[depth-1]) {
				return false, false
			}
			i += n
			skipBlanks()
			if i >= len(b) || b[i] != '>' {
				return false, false
			}
			i++
			if inState() {
				if !stateClosedTerminated(b[:i]) {
					return false, true // decodeTerminated stops at the same end tag
				}
				seen = true
			}
			depth--
			continue
		}
		name, n := scanName(b[i:])
		if n == 0 {
			return false, false
		}
		i += n
		empty := false
		for {
			had := i
			skipBlanks()
			if i >= len(b) {
				return false, false
			}
			if b[i] == '>' {
				i++
				break
			}
			if b[i] == '/' {
				if i+1 >= len(b) || b[i+1] != '>' {
					return false, false
				}
				i += 2
				empty = true
				break
			}
			if i == had { // an attribute follows a blank
				return false, false
			}
			_, an := scanName(b[i:])
			if an == 0 {
				return false, false
			}
			i += an
			skipBlanks()
			if i >= len(b) || b[i] != '=' {
				return false, false
			}
			i++
			skipBlanks()
			if i >= len(b) || (b[i] != '"' && b[i] != '\'') {
				return false, false
			}
			q := b[i]
			i++
			for i < len(b) && b[i] != q {
				if !plainText(b[i]) || b[i] == '&' || b[i] == '<' {
					return false, false
				}
				i++
			}
			if i >= len(b) {
				return false, false
			}
			i++
		}
		if depth >= MaxDepth || inState() {
			return false, false // too deep, or an element inside a state
		}
		local := localName(name)
		if depth == 1 {
			inDialog = string(local) == "dialog"
		}
		if depth == 2 && inDialog && string(local) == "state" {
			if string(name) != "state" {
				return false, false // a prefixed state
			}
			if empty {
				return false, true // <state/>: no state, not terminated
			}
		}
		if !empty {
			stack[depth] = name
			depth++
		}
	}
	if depth != 0 {
		return false, false
	}
	return seen, true
}

// stateClosedTerminated reports whether the state element whose end tag
// ends b held "terminated" (blanks around, any case) as its text.
func stateClosedTerminated(b []byte) bool {
	closing := bytes.LastIndex(b, []byte("</"))
	if closing < 0 {
		return false
	}
	opening := bytes.LastIndexByte(b[:closing], '>')
	if opening < 0 {
		return false
	}
	return bytes.EqualFold(bytes.TrimSpace(b[opening+1:closing]), []byte("terminated"))
}

// plainDeclaration accepts the inside of an <?xml ...?> declaration that
// encoding/xml takes as it is: version 1.0 (or none) and UTF-8 (or none).
func plainDeclaration(pi []byte) bool {
	if !bytes.HasPrefix(pi, []byte("xml")) || (len(pi) > 3 && !isBlank(pi[3])) {
		return false
	}
	for _, c := range pi {
		if !plainText(c) || c == '&' || c == '<' {
			return false
		}
	}
	for _, a := range bytes.Fields(pi[3:]) {
		switch strings.ToLower(string(a)) {
		case `version="1.0"`, `version='1.0'`, `encoding="utf-8"`, `encoding='utf-8'`,
			`standalone="yes"`, `standalone='yes'`, `standalone="no"`, `standalone='no'`:
		default:
			return false
		}
	}
	return true
}

// scanName reads an XML name of the plain subset (ASCII letters, digits,
// '-', '_', '.', at most one ':' inside) and returns it with its length;
// 0 when there is none.
func scanName(b []byte) ([]byte, int) {
	n, colons := 0, 0
loop:
	for n < len(b) {
		c := b[n]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case c >= '0' && c <= '9', c == '-', c == '.', c == ':':
			if n == 0 {
				return nil, 0
			}
			if c == ':' {
				colons++
			}
		default:
			break loop
		}
		n++
	}
	if n == 0 || colons > 1 || b[n-1] == ':' {
		return nil, 0
	}
	return b[:n], n
}

// localName is a name without its namespace prefix.
func localName(name []byte) []byte {
	if i := bytes.IndexByte(name, ':'); i >= 0 {
		return name[i+1:]
	}
	return name
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// plainText is a byte of the subset: printable ASCII or a blank.
func plainText(c byte) bool { return (c >= 0x20 && c < 0x7f) || isBlank(c) }
