package pidf

import (
	"encoding/xml"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/puaside/puaside/internal/xmllimit"
)

// MaxParseSize is the largest document Parse reads, in bytes.
const MaxParseSize = xmllimit.DefaultMaxSize

// Limits on what Parse keeps of a document, so a hostile one stays small.
const (
	maxTuples = 64
	maxNotes  = 16
	maxText   = 1024
)

// ErrInvalid is wrapped by every Parse error.
var ErrInvalid = errors.New("pidf: invalid document")

type xmlDoc struct {
	XMLName xml.Name    `xml:"urn:ietf:params:xml:ns:pidf presence"`
	Entity  string      `xml:"entity,attr"`
	Tuples  []xmlTuple  `xml:"urn:ietf:params:xml:ns:pidf tuple"`
	Notes   []string    `xml:"urn:ietf:params:xml:ns:pidf note"`
	Persons []xmlPerson `xml:"urn:ietf:params:xml:ns:pidf:data-model person"`
}

type xmlTuple struct {
	ID      string `xml:"id,attr"`
	Basic   string `xml:"urn:ietf:params:xml:ns:pidf status>basic"`
	Contact struct {
		Priority string `xml:"priority,attr"`
		URI      string `xml:",chardata"`
	} `xml:"urn:ietf:params:xml:ns:pidf contact"`
	Notes []string `xml:"urn:ietf:params:xml:ns:pidf note"`
}

type xmlPerson struct {
	Activities []struct {
		Items []struct {
			XMLName xml.Name
			Text    string `xml:",chardata"`
		} `xml:",any"`
	} `xml:"urn:ietf:params:xml:ns:pidf:rpid activities"`
	Notes []string `xml:"urn:ietf:params:xml:ns:pidf:data-model note"`
}

// Parse reads a presence document. Person notes are returned with the
// document's notes; activities of every person are returned in order
// (an <rpid:other> as its text). A tuple without a contact priority has
// Priority -1. Documents larger than MaxParseSize, not XML or without the
// PIDF root are refused with an error wrapping ErrInvalid; what is kept of
// a document is bounded (tuples, notes, text lengths).
func Parse(b []byte) (Document, error) {
	if len(b) > MaxParseSize {
		return Document{}, fmt.Errorf("%w: %d bytes (more than %d)", ErrInvalid, len(b), MaxParseSize)
	}
	var x xmlDoc
	d := xmllimit.NewDecoder(b, true)
	if err := d.Decode(&x); err != nil {
		return Document{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	doc := Document{Entity: clip(x.Entity)}
	for i, t := range x.Tuples {
		if i == maxTuples {
			break
		}
		tu := Tuple{ID: clip(t.ID), Basic: strings.ToLower(strings.TrimSpace(t.Basic)), Contact: clip(strings.TrimSpace(t.Contact.URI)), Priority: -1}
		if p, err := strconv.ParseFloat(strings.TrimSpace(t.Contact.Priority), 64); err == nil && p >= 0 && p <= 1 {
			tu.Priority = p
		}
		tu.Notes = clipAll(t.Notes)
		doc.Tuples = append(doc.Tuples, tu)
	}
	doc.Notes = clipAll(x.Notes)
	for _, p := range x.Persons {
		doc.Notes = append(doc.Notes, clipAll(p.Notes)...)
		for _, a := range p.Activities {
			for _, it := range a.Items {
				if it.XMLName.Space != RPIDNamespace || len(doc.Activities) == maxNotes {
					continue
				}
				name := it.XMLName.Local
				if name == "other" {
					name = clip(strings.TrimSpace(it.Text))
				}
				if name != "" {
					doc.Activities = append(doc.Activities, name)
				}
			}
		}
	}
	if len(doc.Notes) > maxNotes {
		doc.Notes = doc.Notes[:maxNotes]
	}
	return doc, nil
}

// Open reports whether any tuple of d is open.
func (d Document) Open() bool {
	for _, t := range d.Tuples {
		if t.Basic == Open {
			return true
		}
	}
	return false
}

func clipAll(ss []string) []string {
	var out []string
	for _, s := range ss {
		if len(out) == maxNotes {
			break
		}
		if s = clip(strings.TrimSpace(s)); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// clip cuts s to maxText bytes on a rune boundary.
func clip(s string) string {
	if len(s) <= maxText {
		return s
	}
	n := maxText
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
