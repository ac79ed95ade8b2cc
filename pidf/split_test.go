package pidf

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/puaside/puaside/internal/xmllimit"
)

func TestSplit(t *testing.T) {
	b, err := os.ReadFile("testdata/presence/rpid.xml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Split(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	if p.Entity != "sip:alice@example.com" || p.Tuples != 1 || len(p.Elements) != 3 {
		t.Fatalf("parts %+v", p)
	}
	if !bytes.HasPrefix(p.Elements[1], []byte("<dm:person")) || !bytes.HasSuffix(p.Elements[1], []byte("</dm:person>")) {
		t.Fatalf("person element %q", p.Elements[1])
	}
	if p.Namespaces["rpid"] != "urn:ietf:params:xml:ns:pidf:rpid" {
		t.Fatalf("namespaces %v", p.Namespaces)
	}
	for name, want := range map[string]error{
		"bad-noid.xml": ErrMalformed, "bad-doctype.xml": ErrDoctype, "bad-namespace.xml": ErrMalformed,
	} {
		b, _ := os.ReadFile(filepath.Join("testdata/presence", name))
		if _, err := Split(b, 0); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	if _, err := Split(nil, 0); !errors.Is(err, ErrEmptyBody) {
		t.Errorf("empty: %v", err)
	}
	if _, err := Split(b, 10); !errors.Is(err, ErrTooLarge) {
		t.Errorf("large: %v", err)
	}
}

func TestCompose(t *testing.T) {
	var parts []*Parts
	for _, name := range []string{"rpid.xml", "prefixed.xml"} {
		b, _ := os.ReadFile(filepath.Join("testdata/presence", name))
		p, err := Split(b, 0)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, p)
	}
	got, conflicts := Compose("sip:alice@example.com", parts)
	if conflicts != 0 {
		t.Fatalf("%d conflicts", conflicts)
	}
	want, err := os.ReadFile("testdata/composed.xml")
	if os.Getenv("PUASIDE_UPDATE_GOLDEN") != "" || err != nil {
		if err := os.WriteFile("testdata/composed.xml", got, 0o644); err != nil {
			t.Fatal(err)
		}
		want = got
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("composed:\n%s\nwant:\n%s", got, want)
	}
	back, err := Split(got, 0)
	if err != nil || back.Tuples != 2 {
		t.Fatalf("composed document does not split back: %v %+v", err, back)
	}
	closed, _ := Compose("sip:carol@example.com", nil)
	if !strings.Contains(string(closed), "<basic>closed</basic>") {
		t.Fatalf("nothing live: %s", closed)
	}
}

// FuzzSplit: no input panics, every refusal is classified, and what
// splits composes into a document that splits again with as many tuples.
func FuzzSplit(f *testing.F) {
	files, _ := filepath.Glob("testdata/presence/*")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(Build(Document{Entity: "sip:a@b", Tuples: []Tuple{{ID: "x", Basic: Open, Contact: "sip:a@c", Priority: 1}}}))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := Split(body, DefaultMaxSize)
		if err != nil {
			if p != nil {
				t.Fatal("parts and error")
			}
			if !errors.Is(err, ErrEmptyBody) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrDoctype) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if p.Tuples == 0 {
			return
		}
		// A part whose elements rely on a default namespace other than
		// PIDF's cannot be composed under PIDF's; those are not checked.
		if d, ok := p.Namespaces[""]; ok && d != Namespace {
			return
		}
		out, _ := Compose(p.Entity, []*Parts{p})
		q, err := Split(out, 4*DefaultMaxSize)
		if err != nil {
			t.Fatalf("composed document does not split: %v\n%s", err, out)
		}
		if q.Tuples != p.Tuples {
			t.Fatalf("%d tuples composed into %d", p.Tuples, q.Tuples)
		}
	})
}

// TestSplitDepthBound: a document nested past the shared XML depth limit
// is refused as malformed, one at the limit is read.
func TestSplitDepthBound(t *testing.T) {
	nest := func(n int) []byte {
		open := `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@x"><tuple id="t">`
		end := `</tuple></presence>`
		return []byte(open + strings.Repeat("<x>", n) + strings.Repeat("</x>", n) + end)
	}
	if _, err := Split(nest(xmllimit.MaxDepth-2), 0); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	if _, err := Split(nest(xmllimit.MaxDepth-1), 0); !errors.Is(err, ErrMalformed) {
		t.Fatalf("past the limit: err %v, want ErrMalformed", err)
	}
}
