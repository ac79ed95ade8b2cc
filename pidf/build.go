package pidf

import (
	"bytes"
	"strconv"

	"github.com/puaside/puaside/internal/xmltext"
)

// Document is one presence document.
type Document struct {
	// Entity is the presentity URI.
	Entity string
	// Tuples are rendered in order.
	Tuples []Tuple
	// Notes are <note> elements of the presence element.
	Notes []string
	// Activities are RFC 4480 activities of the person ("away", "busy",
	// "on-the-phone", ...), rendered in one RFC 4479 <dm:person> element
	// after the notes; empty omits the person. A name that is not a plain
	// RPID element name is rendered as <rpid:other> with the text.
	Activities []string
}

// Tuple is one <tuple> element.
type Tuple struct {
	// ID is the tuple id, an xs:ID.
	ID string
	// Basic is Open or Closed.
	Basic string
	// Contact is the contact URI; empty omits the element.
	Contact string
	// Priority is the contact's priority (its q value); negative omits the
	// attribute.
	Priority float64
	// Notes are <note> elements of the tuple.
	Notes []string
}

// Build renders a document. All attribute values and texts are escaped
// with encoding/xml, so any input yields well-formed XML, and the same
// document always gives the same bytes.
func Build(d Document) []byte {
	var b bytes.Buffer
	b.Grow(256 + 160*len(d.Tuples))
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<presence xmlns="` + Namespace + `" entity="`)
	xmltext.Escape(&b, d.Entity)
	b.WriteString("\">\n")
	for _, t := range d.Tuples {
		b.WriteString(`  <tuple id="`)
		xmltext.Escape(&b, t.ID)
		b.WriteString("\">\n    <status>\n      <basic>")
		xmltext.Escape(&b, t.Basic)
		b.WriteString("</basic>\n    </status>\n")
		if t.Contact != "" {
			b.WriteString("    <contact")
			if t.Priority >= 0 {
				b.WriteString(` priority="` + strconv.FormatFloat(t.Priority, 'f', -1, 64) + `"`)
			}
			b.WriteString(">")
			xmltext.Escape(&b, t.Contact)
			b.WriteString("</contact>\n")
		}
		notes(&b, "    ", t.Notes)
		b.WriteString("  </tuple>\n")
	}
	notes(&b, "  ", d.Notes)
	if len(d.Activities) > 0 {
		b.WriteString(`  <dm:person xmlns:dm="` + DataModelNamespace + `" xmlns:rpid="` + RPIDNamespace + `" id="p`)
		b.WriteString(personID(d.Entity))
		b.WriteString("\">\n    <rpid:activities>")
		for _, a := range d.Activities {
			if plainName(a) {
				b.WriteString("<rpid:" + a + "/>")
			} else {
				b.WriteString("<rpid:other>")
				xmltext.Escape(&b, a)
				b.WriteString("</rpid:other>")
			}
		}
		b.WriteString("</rpid:activities>\n  </dm:person>\n")
	}
	b.WriteString("</presence>\n")
	return b.Bytes()
}

func notes(b *bytes.Buffer, indent string, ns []string) {
	for _, n := range ns {
		b.WriteString(indent + "<note>")
		xmltext.Escape(b, n)
		b.WriteString("</note>\n")
	}
}

// plainName reports whether s can be an element name as it is: lower-case
// ASCII letters, digits and '-', starting with a letter (RFC 4480's names).
func plainName(s string) bool {
	if s == "" || s == "other" || s[0] < 'a' || s[0] > 'z' || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// personID derives a stable xs:ID suffix for the person element from the
// entity, so the same document always gives the same bytes.
func personID(entity string) string {
	var h uint32 = 2166136261
	for i := 0; i < len(entity); i++ {
		h ^= uint32(entity[i])
		h *= 16777619
	}
	return strconv.FormatUint(uint64(h), 36)
}
