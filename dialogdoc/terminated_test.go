package dialogdoc

import (
	"strings"
	"testing"
)

func dlgDoc(states ...string) []byte {
	b := `<?xml version="1.0"?><dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="sip:alice@example.com">`
	for _, s := range states {
		b += `<dialog id="d"><state>` + s + `</state></dialog>`
	}
	return []byte(b + `</dialog-info>`)
}

func TestAllTerminated(t *testing.T) {
	for _, tc := range []struct {
		name string
		body []byte
		want bool
	}{
		{"one terminated", dlgDoc("terminated"), true},
		{"all terminated", dlgDoc("terminated", "terminated"), true},
		{"blanks and case", dlgDoc("\n  Terminated "), true},
		{"one confirmed", dlgDoc("terminated", "confirmed"), false},
		{"confirmed", dlgDoc("confirmed"), false},
		{"no dialog", dlgDoc(), false},
		{"empty", nil, false},
		{"dialog without state", []byte(`<dialog-info><dialog id="x"/></dialog-info>`), false},
		{"state outside a dialog", []byte(`<dialog-info><x><state>terminated</state></x></dialog-info>`), false},
		{"nested deeper", []byte(`<dialog-info><dialog><local><state>terminated</state></local></dialog></dialog-info>`), false},
		{"broken", []byte(`<dialog-info><dialog><state>terminated</state>`), false},
		{"not xml", []byte(`terminated`), false},
		{"doctype", append([]byte(`<!DOCTYPE x [<!ENTITY a "b">]>`), dlgDoc("terminated")...), false},
		{"too deep", []byte(`<dialog-info><dialog><state>terminated</state></dialog>` + strings.Repeat("<x>", MaxDepth) +
			strings.Repeat("</x>", MaxDepth) + `</dialog-info>`), false},
	} {
		if got := AllTerminated(tc.body); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// FuzzScanTerminated checks the fast path against encoding/xml: wherever
// scanTerminated takes a document, its answer is decodeTerminated's.
func FuzzScanTerminated(f *testing.F) {
	for _, s := range []string{
		string(dlgDoc("terminated")), string(dlgDoc("terminated", "confirmed")), string(dlgDoc()),
		string(dlgDoc("\n Terminated ")), `<dialog-info><dialog id="x"/></dialog-info>`,
		`<d:dialog-info xmlns:d="urn:ietf:params:xml:ns:dialog-info"><d:dialog id='a'><d:state>terminated</d:state></d:dialog></d:dialog-info>`,
		`<dialog-info><dialog><state>termin<x/>ated</state></dialog></dialog-info>`,
		`<dialog-info><dialog><state/></dialog></dialog-info>`,
		`<?xml version="1.0" encoding="ISO-8859-1"?><dialog-info><dialog><state>terminated</state></dialog></dialog-info>`,
		`<dialog-info><dialog><state>terminated</state></dialog></dialog-info><x>`,
		`<dialog-info><dialog><state>&#116;erminated</state></dialog></dialog-info>`,
		`<dialog-info><dialog><state>terminated</STATE></dialog></dialog-info>`,
		`<dialog-info><dialog><state>x>terminated</state></dialog></dialog-info>`,
		`<dialog-info><dialog><state xmlns='u'>>terminated</state></dialog></dialog-info>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > DefaultMaxSize {
			return
		}
		all, ok := scanTerminated(body)
		if !ok {
			return
		}
		if want := decodeTerminated(body); all != want {
			t.Fatalf("scanTerminated %v, encoding/xml %v for %q", all, want, body)
		}
	})
}

func TestScanTakesTheTrackersDocuments(t *testing.T) {
	for _, states := range [][]string{{"terminated"}, {"confirmed"}, {"terminated", "terminated"}, {"early", "terminated"}} {
		body := dlgDoc(states...)
		all, ok := scanTerminated(body)
		if !ok {
			t.Fatalf("%v: the fast path did not take a plain document: %s", states, body)
		}
		if want := decodeTerminated(body); all != want {
			t.Fatalf("%v: %v, want %v", states, all, want)
		}
	}
}

func BenchmarkAllTerminated(b *testing.B) {
	body := dlgDoc("terminated")
	b.ReportAllocs()
	for b.Loop() {
		if !AllTerminated(body) {
			b.Fatal("not terminated")
		}
	}
}

// TestScanTextWithGreaterThan: a '>' in a state's text is character data,
// not the end of its start tag ("x>terminated" is not terminated).
func TestScanTextWithGreaterThan(t *testing.T) {
	for _, body := range []string{
		`<dialog-info><dialog><state>x>terminated</state></dialog></dialog-info>`,
		`<dialog-info><dialog><state xmlns='u'>>terminated</state></dialog></dialog-info>`,
	} {
		if AllTerminated([]byte(body)) {
			t.Errorf("%s: terminated", body)
		}
		if all, ok := scanTerminated([]byte(body)); ok && all != decodeTerminated([]byte(body)) {
			t.Errorf("%s: fast path %v, encoding/xml %v", body, all, decodeTerminated([]byte(body)))
		}
	}
}
