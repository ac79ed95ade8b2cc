package pidf

import (
	"encoding/xml"
	"strings"
	"testing"
)

func TestBuildNotesAndEscaping(t *testing.T) {
	hostile := `a"b<c>&d'` + "]]>"
	doc := Build(Document{Entity: "sip:" + hostile, Notes: []string{"on the phone"},
		Tuples: []Tuple{{ID: "t1", Basic: Open, Contact: "sip:" + hostile, Priority: 1, Notes: []string{hostile}},
			{ID: "t2", Basic: Closed, Priority: -1}}})
	var v struct {
		XMLName xml.Name `xml:"urn:ietf:params:xml:ns:pidf presence"`
		Entity  string   `xml:"entity,attr"`
		Tuples  []struct {
			ID      string `xml:"id,attr"`
			Basic   string `xml:"status>basic"`
			Contact struct {
				Priority string `xml:"priority,attr"`
				URI      string `xml:",chardata"`
			} `xml:"contact"`
			Notes []string `xml:"note"`
		} `xml:"tuple"`
		Notes []string `xml:"note"`
	}
	if err := xml.Unmarshal(doc, &v); err != nil {
		t.Fatalf("not XML: %v\n%s", err, doc)
	}
	if v.Entity != "sip:"+hostile || len(v.Tuples) != 2 || v.Tuples[0].Contact.Priority != "1" ||
		v.Tuples[0].Contact.URI != "sip:"+hostile || v.Tuples[0].Notes[0] != hostile || v.Tuples[1].Basic != Closed ||
		len(v.Notes) != 1 {
		t.Errorf("read back %+v", v)
	}
	if strings.Contains(string(doc), "priority") && strings.Count(string(doc), "priority") != 1 {
		t.Errorf("priority on a tuple without one:\n%s", doc)
	}
}

// BenchmarkBuild measures a registration's PIDF: one tuple with a contact.
func BenchmarkBuild(b *testing.B) {
	d := Document{Entity: "sip:user0001@harness.test",
		Tuples: []Tuple{{ID: "t0a1b2c3d", Basic: Open, Contact: "sip:user0001@127.0.0.1:5111", Priority: -1}}}
	b.ReportAllocs()
	for b.Loop() {
		_ = Build(d)
	}
}
