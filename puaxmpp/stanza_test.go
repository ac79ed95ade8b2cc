package puaxmpp

import (
	"bytes"
	"encoding/xml"
	"errors"
	"strings"
	"testing"
)

// readStanza parses one presence stanza from raw XML as the session hands
// it to the gateway: its start element, then the inner tokens and its end.
func readStanza(raw string, depth int) (inPresence, error) {
	d := xml.NewDecoder(strings.NewReader(raw))
	for {
		tok, err := d.Token()
		if err != nil {
			return inPresence{}, err
		}
		if st, ok := tok.(xml.StartElement); ok {
			return readPresence(st, d, depth)
		}
	}
}

func TestReadPresence(t *testing.T) {
	p, err := readStanza(`<presence from='bob@x.org/phone' to='alice@gw.x.org' id='1'>
	  <show>dnd</show><status>in a meeting</status><status xml:lang='fr'>en réunion</status>
	  <priority>-5</priority><c xmlns='http://jabber.org/protocol/caps' node='n'><deep><deeper/></deep></c></presence>`, 16)
	if err != nil {
		t.Fatal(err)
	}
	if p.From.String() != "bob@x.org/phone" || p.To.String() != "alice@gw.x.org" || p.Show != ShowDND ||
		p.Status != "in a meeting" || p.Priority != -5 || p.Type != "" {
		t.Fatalf("read %+v", p)
	}
	p, err = readStanza(`<presence from='bob@x.org' to='gw.x.org' type='unavailable'><show>bogus</show></presence>`, 16)
	if err != nil || p.Type != "unavailable" || p.Show != "" {
		t.Fatalf("unknown show: %+v, %v", p, err)
	}
}

func TestReadPresenceRefusesHostile(t *testing.T) {
	deep := "<presence from='b@x.org' to='a@gw'>" + strings.Repeat("<x>", 40) + strings.Repeat("</x>", 40) + "</presence>"
	many := "<presence from='b@x.org' to='a@gw'>" + strings.Repeat("<x/>", 300) + "</presence>"
	huge := "<presence from='b@x.org' to='a@gw'><status>" + strings.Repeat("a", 20000) + "</status></presence>"
	for name, raw := range map[string]string{"deep": deep, "many": many, "huge": huge} {
		if _, err := readStanza(raw, 16); !errors.Is(err, ErrHostile) {
			t.Errorf("%s: %v, want ErrHostile", name, err)
		}
	}
	for name, raw := range map[string]string{
		"no from":      "<presence to='a@gw'/>",
		"bad to":       "<presence from='b@x.org' to='@@'/>",
		"bad type":     "<presence from='b@x.org' to='a@gw' type='x'/>",
		"bad priority": "<presence from='b@x.org' to='a@gw'><priority>200</priority></presence>",
	} {
		if _, err := readStanza(raw, 16); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestStanzaOf(t *testing.T) {
	var b bytes.Buffer
	o := stanzaOf("alice@gw", "bob@x.org", Presence{Show: ShowAway, Status: "On the phone <&>", Priority: 300})
	if err := xml.NewEncoder(&b).Encode(o); err != nil {
		t.Fatal(err)
	}
	want := `<presence from="alice@gw" to="bob@x.org"><show>away</show><status>On the phone &lt;&amp;&gt;</status><priority>127</priority></presence>`
	if b.String() != want {
		t.Fatalf("got  %s\nwant %s", b.String(), want)
	}
}

// FuzzReadPresence: any bytes as a presence stanza give a presence or an
// error, never a crash, and what is read is bounded.
func FuzzReadPresence(f *testing.F) {
	f.Add(`<presence from='bob@x.org/phone' to='alice@gw'><show>away</show><status>s</status><priority>1</priority></presence>`)
	f.Add(`<presence from='bob@x.org' to='alice@gw' type='unavailable'/>`)
	f.Add(`<presence from='b@x' to='a@g'><x><y><z/></y></x></presence>`)
	f.Add(`<presence from='b@x' to='a@g'><status>` + strings.Repeat("é", 600) + `</status></presence>`)
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := readStanza(raw, 8)
		if err != nil {
			return
		}
		if len(p.Status) > maxStatus || p.Priority < -128 || p.Priority > 127 {
			t.Fatalf("unbounded: %+v", p)
		}
		switch p.Show {
		case "", ShowAway, ShowChat, ShowDND, ShowXA:
		default:
			t.Fatalf("show %q", p.Show)
		}
	})
}
