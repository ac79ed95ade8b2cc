package dialogdoc

import (
	"strings"
	"testing"
)

// TestWithID: the id attribute is rewritten, call-id and the rest kept.
func TestWithID(t *testing.T) {
	doc, err := Parse([]byte(`<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="sip:a@b">`+
		`<dialog call-id="c1" id='d1' local-tag="l"><state>confirmed</state></dialog></dialog-info>`), 0)
	if err != nil {
		t.Fatal(err)
	}
	d := doc.Dialogs[0].WithID(`d1~"x"`)
	if want := `<dialog call-id="c1" id="d1~&#34;x&#34;" local-tag="l"><state>confirmed</state></dialog>`; string(d.Raw) != want {
		t.Fatalf("raw %s\nwant %s", d.Raw, want)
	}
	if doc.Dialogs[0].ID != "d1" || !strings.Contains(string(doc.Dialogs[0].Raw), `id='d1'`) {
		t.Fatalf("WithID changed its receiver: %+v", doc.Dialogs[0])
	}
}

// TestComposePrefixedNamespaces: dialogs written with a prefix declared on
// their document's root stay readable in the composed document; a prefix
// declared twice with different URIs is counted.
func TestComposePrefixedNamespaces(t *testing.T) {
	a, err := Parse([]byte(`<di:dialog-info xmlns:di="urn:ietf:params:xml:ns:dialog-info" version="3" state="partial" entity="sip:a@b">`+
		`<di:dialog id="p1"><di:state>early</di:state></di:dialog></di:dialog-info>`), 0)
	if err != nil {
		t.Fatal(err)
	}
	b := Part{Dialogs: []Dialog{{ID: "b1", State: "confirmed"}}, Namespaces: map[string]string{"di": "urn:other"}}
	body, conflicts := Compose("sip:line@b", 9, []Part{{Dialogs: a.Dialogs, Namespaces: a.Namespaces()}, b})
	if conflicts != 1 {
		t.Errorf("conflicts %d, want 1", conflicts)
	}
	c, err := Parse(body, 0)
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	if c.State != DocFull || c.Version != 9 || c.Entity != "sip:line@b" || len(c.Dialogs) != 2 ||
		c.Dialogs[0].ID != "p1" || c.Dialogs[0].State != "early" || c.Dialogs[1].ID != "b1" {
		t.Fatalf("composed %+v\n%s", c, body)
	}
}
