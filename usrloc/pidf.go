package usrloc

import (
	"bytes"
	"encoding/xml"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
)

// ContentTypePIDF is the content type of the published documents.
const ContentTypePIDF = "application/pidf+xml"

// Entity returns the PIDF entity of an AoR ("sip:user@domain"): the AoR
// itself, or "<prefix>:user@domain" when prefix is set (pua_usrloc's
// entity_prefix).
func Entity(aor, prefix string) string {
	if prefix == "" {
		return aor
	}
	return prefix + ":" + strings.TrimPrefix(aor, "sip:")
}

// TupleID returns the stable tuple id of a contact URI: "t" and 16 hex
// digits of its FNV-1a hash, a valid xs:ID.
func TupleID(s string) string {
	h := fnv.New64a()
	h.Write([]byte(s))
	return "t" + strconv.FormatUint(h.Sum64()|1<<63, 16)
}

// BuildPIDF returns the PIDF document of an AoR with its bound contacts
// ("open", one tuple per contact, ordered by q descending then URI) or,
// when contacts is empty, the "closed" document (one tuple). The output is
// deterministic: the same binding set always gives the same bytes.
func BuildPIDF(entity string, contacts []Binding) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="`)
	escape(&b, entity)
	b.WriteString("\">\n")
	if len(contacts) == 0 {
		b.WriteString(`  <tuple id="` + TupleID(entity) + "\">\n")
		b.WriteString("    <status>\n      <basic>closed</basic>\n    </status>\n  </tuple>\n")
		b.WriteString("</presence>\n")
		return b.Bytes()
	}
	cs := append([]Binding(nil), contacts...)
	sort.Slice(cs, func(i, j int) bool {
		if qi, qj := effQ(cs[i].Q), effQ(cs[j].Q); qi != qj {
			return qi > qj
		}
		return cs[i].URI < cs[j].URI
	})
	for _, c := range cs {
		b.WriteString(`  <tuple id="` + TupleID(c.URI) + "\">\n")
		b.WriteString("    <status>\n      <basic>open</basic>\n    </status>\n")
		b.WriteString("    <contact")
		if c.Q >= 0 {
			b.WriteString(` priority="` + strconv.FormatFloat(c.Q, 'f', -1, 64) + `"`)
		}
		b.WriteString(">")
		escape(&b, c.URI)
		b.WriteString("</contact>\n  </tuple>\n")
	}
	b.WriteString("</presence>\n")
	return b.Bytes()
}

// effQ orders an unstated q (-1) as 1.0, the RFC 3261 default preference.
func effQ(q float64) float64 {
	if q < 0 {
		return 1
	}
	return q
}

// escape writes s with XML escaping (valid in text and in a "-quoted attribute).
func escape(b *bytes.Buffer, s string) {
	_ = xml.EscapeText(b, []byte(s)) // writes to a bytes.Buffer never fail
}
