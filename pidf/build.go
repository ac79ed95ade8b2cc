package pidf

import (
	"bytes"
	"encoding/xml"
	"strconv"
)

// Document is one presence document.
type Document struct {
	// Entity is the presentity URI.
	Entity string
	// Tuples are rendered in order.
	Tuples []Tuple
	// Notes are <note> elements of the presence element.
	Notes []string
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
	esc(&b, d.Entity)
	b.WriteString("\">\n")
	for _, t := range d.Tuples {
		b.WriteString(`  <tuple id="`)
		esc(&b, t.ID)
		b.WriteString("\">\n    <status>\n      <basic>")
		esc(&b, t.Basic)
		b.WriteString("</basic>\n    </status>\n")
		if t.Contact != "" {
			b.WriteString("    <contact")
			if t.Priority >= 0 {
				b.WriteString(` priority="` + strconv.FormatFloat(t.Priority, 'f', -1, 64) + `"`)
			}
			b.WriteString(">")
			esc(&b, t.Contact)
			b.WriteString("</contact>\n")
		}
		notes(&b, "    ", t.Notes)
		b.WriteString("  </tuple>\n")
	}
	notes(&b, "  ", d.Notes)
	b.WriteString("</presence>\n")
	return b.Bytes()
}

func notes(b *bytes.Buffer, indent string, ns []string) {
	for _, n := range ns {
		b.WriteString(indent + "<note>")
		esc(b, n)
		b.WriteString("</note>\n")
	}
}

func esc(b *bytes.Buffer, s string) {
	_ = xml.EscapeText(b, []byte(s)) // writes to a bytes.Buffer never fail
}
