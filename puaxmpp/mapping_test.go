package puaxmpp

import (
	"bytes"
	"encoding/xml"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/puaside/puaside/pidf"
)

var update = flag.Bool("update", false, "rewrite the golden files of the mapping rules")

// golden compares got with testdata/name, or writes it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./puaxmpp -run TestMapping -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

// TestMappingXMPPToPIDF: one golden PIDF per rule of the XMPP → SIP
// mapping.
func TestMappingXMPPToPIDF(t *testing.T) {
	for name, rs := range map[string][]Resource{
		"offline":        nil,
		"available":      {{Name: "phone"}},
		"away-status":    {{Name: "phone", Show: ShowAway, Status: "at lunch"}},
		"xa":             {{Name: "phone", Show: ShowXA}},
		"dnd":            {{Name: "phone", Show: ShowDND, Status: "in a meeting"}},
		"chat":           {{Name: "phone", Show: ShowChat, Status: "free"}},
		"two-resources":  {{Name: "phone", Show: ShowAway, Priority: 1}, {Name: "laptop", Status: "here", Priority: 10}},
		"negative-prio":  {{Name: "bot", Priority: -1}},
		"hostile-status": {{Name: `r"<&>`, Status: `<script>&amp;]]>`}},
	} {
		t.Run(name, func(t *testing.T) {
			golden(t, filepath.Join("xmpp2pidf", name+".pidf"), ComposePIDF("sip:bob@xmpp.localhost", "bob@xmpp.localhost", rs))
		})
	}
}

// TestMappingPIDFToXMPP: for each PIDF in testdata/pidf2xmpp, the golden
// presence stanza it becomes.
func TestMappingPIDFToXMPP(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "pidf2xmpp", "*.pidf"))
	if err != nil || len(files) < 8 {
		t.Fatalf("%d inputs: %v", len(files), err)
	}
	sort.Strings(files)
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".pidf")
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			p, err := PresenceOfPIDF(body)
			var b bytes.Buffer
			if err != nil {
				b.WriteString("error\n")
			} else {
				if err := xml.NewEncoder(&b).Encode(stanzaOf("alice@sip.xmpp.localhost", "bob@xmpp.localhost", p)); err != nil {
					t.Fatal(err)
				}
				b.WriteString("\n")
			}
			golden(t, filepath.Join("pidf2xmpp", name+".presence"), b.Bytes())
		})
	}
}

// FuzzComposePIDF: any resources give a well-formed PIDF that reads back
// with one open tuple per resource, each with a distinct valid id.
func FuzzComposePIDF(f *testing.F) {
	f.Add("phone", "away", "at lunch", 5, "laptop", "", "", 0)
	f.Add(`r"<`, "dnd", "]]>&", -128, "", "xa", "", 127)
	f.Fuzz(func(t *testing.T, n1, s1, st1 string, p1 int, n2, s2, st2 string, p2 int) {
		rs := []Resource{{Name: n1, Show: s1, Status: clipText(st1, maxStatus), Priority: p1}}
		if n2 != n1 {
			rs = append(rs, Resource{Name: n2, Show: s2, Status: clipText(st2, maxStatus), Priority: p2})
		}
		body := ComposePIDF("sip:bob@x.org", "bob@x.org", rs)
		doc, err := pidf.Parse(body)
		if err != nil {
			t.Fatalf("unreadable: %v\n%s", err, body)
		}
		if len(doc.Tuples) != len(rs) || !doc.Open() {
			t.Fatalf("%d tuples for %d resources:\n%s", len(doc.Tuples), len(rs), body)
		}
		if len(rs) == 2 && doc.Tuples[0].ID == doc.Tuples[1].ID {
			t.Fatalf("tuple ids collide:\n%s", body)
		}
		if _, err := PresenceOfPIDF(body); err != nil {
			t.Fatalf("its own document refused: %v", err)
		}
	})
}

// FuzzPresenceOfPIDF: any NOTIFY body gives a valid presence or an error.
func FuzzPresenceOfPIDF(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "pidf2xmpp", "*.pidf"))
	for _, fn := range files {
		if b, err := os.ReadFile(fn); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := PresenceOfPIDF(body)
		if err != nil {
			return
		}
		if p.Type != "" && p.Type != "unavailable" {
			t.Fatalf("type %q", p.Type)
		}
		if p.Priority < -128 || p.Priority > 127 {
			t.Fatalf("priority %d", p.Priority)
		}
		var b bytes.Buffer
		if err := xml.NewEncoder(&b).Encode(stanzaOf("a@g", "b@x", p)); err != nil {
			t.Fatalf("stanza: %v", err)
		}
	})
}
