package pidf

import (
	"errors"
	"strings"
	"testing"
)

func TestParseReadsBuild(t *testing.T) {
	in := Document{Entity: "sip:a@x", Notes: []string{"n"}, Activities: []string{"away", "Not A Name"},
		Tuples: []Tuple{{ID: "t1", Basic: Open, Contact: "sip:a@192.0.2.1", Priority: 0.5, Notes: []string{"t"}}, {ID: "t2", Basic: Closed, Priority: -1}}}
	got, err := Parse(Build(in))
	if err != nil {
		t.Fatal(err)
	}
	if got.Entity != in.Entity || len(got.Tuples) != 2 || got.Tuples[0].Priority != 0.5 || got.Tuples[1].Priority != -1 ||
		got.Tuples[0].Notes[0] != "t" || !got.Open() || len(got.Activities) != 2 || got.Activities[0] != "away" ||
		got.Activities[1] != "Not A Name" || got.Notes[0] != "n" {
		t.Fatalf("read back %+v", got)
	}
	for name, b := range map[string]string{
		"not xml":    "<presence",
		"other root": `<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info"/>`,
		"too large":  `<presence xmlns="urn:ietf:params:xml:ns:pidf">` + strings.Repeat(" ", MaxParseSize) + `</presence>`,
	} {
		if _, err := Parse([]byte(b)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzParse: any bytes give a document or ErrInvalid; what a document
// keeps is bounded and builds again into a document that parses.
func FuzzParse(f *testing.F) {
	f.Add(Build(Document{Entity: "sip:a@x", Activities: []string{"busy"}, Tuples: []Tuple{{ID: "t", Basic: Open, Priority: 1}}}))
	f.Add([]byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf"><tuple id="x"><status><basic>closed</basic></status></tuple></presence>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			return
		}
		if len(d.Tuples) > maxTuples || len(d.Notes) > maxNotes || len(d.Activities) > maxNotes {
			t.Fatalf("unbounded: %d tuples, %d notes, %d activities", len(d.Tuples), len(d.Notes), len(d.Activities))
		}
		if _, err := Parse(Build(d)); err != nil {
			t.Fatalf("rebuilt document refused: %v", err)
		}
	})
}
