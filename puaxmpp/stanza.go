package puaxmpp

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"mellium.im/xmpp/jid"
)

// ErrHostile is wrapped by the errors of a stanza refused for its shape
// (too deep, too many elements, too much text).
var ErrHostile = errors.New("puaxmpp: stanza refused")

// maxElements bounds the elements of one presence stanza; maxStatus bounds
// the status text kept.
const (
	maxElements = 256
	maxStatus   = 1024
	maxText     = 16 << 10
)

// inPresence is a presence stanza received from the XMPP server.
type inPresence struct {
	From, To jid.JID
	Type     string
	ID       string
	Show     string
	Status   string
	Priority int
}

// readPresence reads the presence stanza whose start element is start
// from r (the stanza's inner tokens), within depth. Unknown children and
// attributes are ignored; a stanza too deep, with too many elements or too
// much text is refused with ErrHostile; bad addresses or values with
// ErrBadAddress or a plain error.
func readPresence(start xml.StartElement, r xml.TokenReader, maxDepth int) (inPresence, error) {
	var p inPresence
	var from, to string
	for _, a := range start.Attr {
		switch a.Name.Local {
		case "from":
			from = a.Value
		case "to":
			to = a.Value
		case "type":
			p.Type = a.Value
		case "id":
			p.ID = a.Value
		}
	}
	switch p.Type {
	case "", "unavailable", "subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe", "error":
	default:
		return p, fmt.Errorf("presence type %q unknown", clipText(p.Type, 64))
	}
	var err error
	if p.From, err = jid.Parse(from); err != nil || from == "" {
		return p, fmt.Errorf("%w: from %q", ErrBadAddress, clipText(from, 256))
	}
	if p.To, err = jid.Parse(to); err != nil || to == "" {
		return p, fmt.Errorf("%w: to %q", ErrBadAddress, clipText(to, 256))
	}
	depth, elems, text := 0, 0, 0
	var field *strings.Builder
	var show, status, prio strings.Builder
	haveStatus := false
loop:
	for {
		tok, err := r.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return p, fmt.Errorf("presence: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			elems++
			if depth > maxDepth {
				return p, fmt.Errorf("%w: deeper than %d", ErrHostile, maxDepth)
			}
			if elems > maxElements {
				return p, fmt.Errorf("%w: more than %d elements", ErrHostile, maxElements)
			}
			field = nil
			if depth == 1 {
				switch t.Name.Local {
				case "show":
					field = &show
				case "priority":
					field = &prio
				case "status":
					// The first status is kept (they are translations).
					if !haveStatus {
						field = &status
						haveStatus = true
					}
				}
			}
		case xml.EndElement:
			depth--
			field = nil
			if depth < 0 {
				break loop // the stanza's own end element
			}
		case xml.CharData:
			text += len(t)
			if text > maxText {
				return p, fmt.Errorf("%w: more than %d bytes of text", ErrHostile, maxText)
			}
			if field != nil && field.Len() < maxStatus {
				field.Write(t)
			}
		}
	}
	p.Show = strings.TrimSpace(show.String())
	switch p.Show {
	case "", ShowAway, ShowChat, ShowDND, ShowXA:
	default:
		p.Show = "" // RFC 6121: an unknown show is treated as none
	}
	p.Status = clipText(strings.TrimSpace(status.String()), maxStatus)
	if s := strings.TrimSpace(prio.String()); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < -128 || n > 127 {
			return p, fmt.Errorf("priority %q is not an integer -128..127", clipText(s, 32))
		}
		p.Priority = n
	}
	return p, nil
}

// clipText cuts s to n bytes on a rune boundary and makes it valid UTF-8.
func clipText(s string, n int) string {
	if len(s) > n {
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// outPresence is a presence stanza the gateway sends.
type outPresence struct {
	XMLName  xml.Name   `xml:"presence"`
	From     string     `xml:"from,attr"`
	To       string     `xml:"to,attr"`
	Type     string     `xml:"type,attr,omitempty"`
	ID       string     `xml:"id,attr,omitempty"`
	Show     string     `xml:"show,omitempty"`
	Status   string     `xml:"status,omitempty"`
	Priority *int       `xml:"priority,omitempty"`
	Error    *errorElem `xml:"error,omitempty"`
}

// errorElem is a stanza error (RFC 6120 §8.3).
type errorElem struct {
	Type      string `xml:"type,attr"`
	Condition struct {
		XMLName xml.Name
	}
	Text *struct {
		XMLName xml.Name `xml:"urn:ietf:params:xml:ns:xmpp-stanzas text"`
		Text    string   `xml:",chardata"`
	} `xml:",omitempty"`
}

// newError is a stanza error of type typ with condition cond and a text.
func newError(typ, cond, text string) *errorElem {
	e := &errorElem{Type: typ}
	e.Condition.XMLName = xml.Name{Space: "urn:ietf:params:xml:ns:xmpp-stanzas", Local: cond}
	if text != "" {
		e.Text = &struct {
			XMLName xml.Name `xml:"urn:ietf:params:xml:ns:xmpp-stanzas text"`
			Text    string   `xml:",chardata"`
		}{Text: clipText(text, 256)}
	}
	return e
}

// stanzaOf is the stanza of presence p from one address to another.
func stanzaOf(from, to string, p Presence) outPresence {
	o := outPresence{From: from, To: to, Type: p.Type}
	switch p.Type {
	case "":
		o.Show = p.Show
		o.Status = clipText(p.Status, maxStatus)
		if p.Priority != 0 {
			pr := max(-128, min(127, p.Priority))
			o.Priority = &pr
		}
	case "unavailable":
		o.Status = clipText(p.Status, maxStatus)
	}
	return o
}
