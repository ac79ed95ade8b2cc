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
