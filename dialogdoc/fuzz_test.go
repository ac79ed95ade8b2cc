package dialogdoc

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDocument is the codec's one fuzz target: no input panics, Parse
// classifies every refusal, a parsed document holds only dialogs with an
// id and a state, its full-state rendering parses again with the same
// dialogs, and AllTerminated never says yes to what it cannot read.
func FuzzDocument(f *testing.F) {
	for _, dir := range []string{"testdata/notify", "testdata/bad"} {
		files, err := filepath.Glob(filepath.Join(dir, "*"))
		if err != nil {
			f.Fatal(err)
		}
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add(dlgDoc("terminated"))
	f.Add(dlgDoc("early", "terminated"))
	f.Fuzz(func(t *testing.T, body []byte) {
		if AllTerminated(body) && len(body) < len("<a><dialog><state>terminated</state></dialog></a>")-2 {
			t.Fatalf("%q: too short to be a terminated document", body)
		}
		doc, err := Parse(body, DefaultMaxSize)
		if err != nil {
			if doc != nil {
				t.Fatalf("document and error: %v", err)
			}
			if !errors.Is(err, ErrEmptyBody) && !errors.Is(err, ErrTooLarge) &&
				!errors.Is(err, ErrDoctype) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if doc.State != DocFull && doc.State != DocPartial {
			t.Fatalf("document state %q", doc.State)
		}
		for _, d := range doc.Dialogs {
			if d.ID == "" || d.State == "" {
				t.Fatalf("dialog without id or state: %+v", d)
			}
		}
		full := doc.FullDocument(doc.Dialogs)
		again, err := Parse(full, 2*DefaultMaxSize)
		if err != nil {
			t.Fatalf("full document of a parsed one does not parse: %v\n%s", err, full)
		}
		if again.Partial() || len(again.Dialogs) != len(doc.Dialogs) {
			t.Fatalf("full document: state %q, %d dialogs, want full and %d", again.State, len(again.Dialogs), len(doc.Dialogs))
		}
		// Composed with every id qualified, as a shared line's document,
		// it parses again with the same dialogs under the new ids.
		q := make([]Dialog, len(doc.Dialogs))
		for i, d := range doc.Dialogs {
			q[i] = d.WithID(d.ID + "~t")
		}
		composed, _ := Compose("sip:line@example.com", 7, []Part{{Dialogs: q, Namespaces: doc.Namespaces()}})
		c, err := Parse(composed, 2*DefaultMaxSize)
		if err != nil {
			t.Fatalf("composed document does not parse: %v\n%s", err, composed)
		}
		if c.Partial() || c.Version != 7 || len(c.Dialogs) != len(doc.Dialogs) {
			t.Fatalf("composed document: state %q version %d, %d dialogs, want full, 7, %d", c.State, c.Version, len(c.Dialogs), len(doc.Dialogs))
		}
		for i := range c.Dialogs {
			if c.Dialogs[i].ID != doc.Dialogs[i].ID+"~t" || c.Dialogs[i].State != doc.Dialogs[i].State || c.Dialogs[i].LineID != doc.Dialogs[i].LineID {
				t.Fatalf("composed dialog %d: %+v, from %+v", i, c.Dialogs[i], doc.Dialogs[i])
			}
		}
	})
}
