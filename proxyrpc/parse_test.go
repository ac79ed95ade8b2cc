package proxyrpc

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// capture returns the result member of a response captured from Kamailio 5.6.
func capture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "kamailio-5.6", name))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return r.Result
}

func TestParseULDumpCaptured(t *testing.T) {
	b, err := ParseULDump(capture(t, "ul.dump.json"), "location")
	if err != nil {
		t.Fatal(err)
	}
	if b.Skipped != 0 || b.Lapsed != 0 || len(b.AoRs) != 4 {
		t.Fatalf("got %+v, want 4 AoRs, nothing skipped", b)
	}
	byName := map[string]AoR{}
	for _, a := range b.AoRs {
		byName[a.Name] = a
	}
	carol, ok := byName["carol"]
	if !ok || carol.Incomplete || len(carol.Contacts) != 2 {
		t.Fatalf("carol = %+v", carol)
	}
	desk, mobile := carol.Contacts[0], carol.Contacts[1]
	if desk.URI != "sip:carol-desk@127.0.0.1:5998" || desk.Remaining != 899 || desk.Q != 1 || desk.Instance != "" {
		t.Errorf("carol's desk contact = %+v", desk)
	}
	if mobile.URI != "sip:carol@127.0.0.1:5999;transport=udp" || mobile.Remaining != 119 || mobile.Q != 0.5 ||
		mobile.Instance != "<urn:uuid:00000000-0000-0000-0000-000000000001>" || mobile.CallID != "carol-reg-1" ||
		mobile.CSeq != 7 || mobile.UserAgent != `Polycom/5.9 "quoted" ü` || mobile.Received != "" {
		t.Errorf("carol's second contact = %+v", mobile)
	}
	if a := byName["alice"]; len(a.Contacts) != 1 || a.Contacts[0].Q != -1 || a.Contacts[0].Remaining != 599 {
		t.Errorf("alice = %+v", a)
	}
}

func TestParseULDumpPermanentAndExpired(t *testing.T) {
	b, err := ParseULDump(capture(t, "ul.dump-permanent-expired.json"), "location")
	if err != nil {
		t.Fatal(err)
	}
	if b.Lapsed != 1 {
		t.Errorf("lapsed = %d, want 1 (frank)", b.Lapsed)
	}
	for _, a := range b.AoRs {
		switch a.Name {
		case "eve":
			if len(a.Contacts) != 1 || !a.Contacts[0].Permanent {
				t.Errorf("eve = %+v, want one permanent contact", a)
			}
		case "frank":
			if len(a.Contacts) != 0 || a.Incomplete {
				t.Errorf("frank = %+v, want no live contact", a)
			}
		}
	}
}

func TestParseULDumpBriefIsIncomplete(t *testing.T) {
	b, err := ParseULDump(capture(t, "ul.dump-brief.json"), "location")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range b.AoRs {
		if !a.Incomplete {
			t.Errorf("%s: a brief dump must not claim the AoR has no contacts", a.Name)
		}
	}
}

func TestParseULDumpEmptyAndOtherTable(t *testing.T) {
	b, err := ParseULDump(capture(t, "ul.dump-empty.json"), "location")
	if err != nil || len(b.AoRs) != 0 {
		t.Fatalf("empty dump: %+v, %v", b, err)
	}
	if _, err := ParseULDump(capture(t, "ul.dump-empty.json"), "location_pbx"); !errors.Is(err, ErrProtocol) {
		t.Fatalf("missing table: err %v, want ErrProtocol", err)
	}
}

func TestParseULDumpHostile(t *testing.T) {
	for _, tc := range []struct {
		name, in      string
		wantErr       bool
		aors, skipped int
		incomplete    bool
	}{
		{name: "not an object", in: `[1,2]`, wantErr: true},
		{name: "no domains", in: `{}`, wantErr: true},
		{name: "domains wrong type", in: `{"Domains":"x"}`, wantErr: true},
		{name: "aor not a string", in: `{"Domains":[{"Domain":{"Domain":"location","AoRs":[{"Info":{"AoR":5}}]}}]}`, skipped: 1},
		{name: "aor with CRLF", in: `{"Domains":[{"Domain":{"Domain":"location","AoRs":[{"Info":{"AoR":"a\r\nb","Contacts":[]}}]}}]}`, skipped: 1},
		{name: "contact bad expires", in: `{"Domains":[{"Domain":{"Domain":"location","AoRs":[{"Info":{"AoR":"a","Contacts":[{"Contact":{"Address":"sip:a@h","Expires":"soon"}}]}}]}}]}`, aors: 1, incomplete: true},
		{name: "contact negative expires", in: `{"Domains":[{"Domain":{"Domain":"location","AoRs":[{"Info":{"AoR":"a","Contacts":[{"Contact":{"Address":"sip:a@h","Expires":-5}}]}}]}}]}`, aors: 1, incomplete: true},
		{name: "contact q above 1", in: `{"Domains":[{"Domain":{"Domain":"location","AoRs":[{"Info":{"AoR":"a","Contacts":[{"Contact":{"Address":"sip:a@h","Expires":5,"Q":7}}]}}]}}]}`, aors: 1, incomplete: true},
		{name: "contact without address", in: `{"Domains":[{"Domain":{"Domain":"location","AoRs":[{"Info":{"AoR":"a","Contacts":[{"Contact":{"Expires":5}}]}}]}}]}`, aors: 1, incomplete: true},
		{name: "contact not an object", in: `{"Domains":[{"Domain":{"Domain":"location","AoRs":[{"Info":{"AoR":"a","Contacts":[7]}}]}}]}`, aors: 1, incomplete: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := ParseULDump([]byte(tc.in), "location")
			if tc.wantErr {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("err %v, want ErrProtocol", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(b.AoRs) != tc.aors || b.Skipped != tc.skipped {
				t.Fatalf("got %+v", b)
			}
			if tc.aors > 0 && b.AoRs[0].Incomplete != tc.incomplete {
				t.Fatalf("incomplete = %v, want %v", b.AoRs[0].Incomplete, tc.incomplete)
			}
		})
	}
}

func TestParseDlgListCaptured(t *testing.T) {
	d, err := ParseDlgList(capture(t, "dlg.list.json"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Skipped != 0 || len(d.Dialogs) != 2 {
		t.Fatalf("got %+v", d)
	}
	early, confirmed := d.Dialogs[0], d.Dialogs[1]
	if early.State != DialogEarly || early.ToTag != "" || early.FromTag != "JwD8yFIuo0ai" ||
		early.FromURI != "sip:bob@example.com" || early.ToURI != "sip:dave@example.com" ||
		!early.Answered.IsZero() || early.Created.IsZero() || early.CalleeContact != "" || early.State.Answered() {
		t.Errorf("early dialog = %+v", early)
	}
	if confirmed.State != DialogConfirmed || !confirmed.State.Answered() ||
		confirmed.CallID != "94ad0b7a-db93-41c2-9a13-4bad613002cf" || confirmed.FromTag != "NrPCCzcQN57A" ||
		confirmed.ToTag != "36d9dcf6-5466-4bc1-894c-8a0eda7d5965" || confirmed.CallerContact != "sip:alice@127.0.0.1:57274" ||
		confirmed.CalleeContact != "sip:bob@127.0.0.1:55642" || !confirmed.Answered.Equal(time.Unix(1796117671, 0)) {
		t.Errorf("confirmed dialog = %+v", confirmed)
	}
	if e, err := ParseDlgList(capture(t, "dlg.list-empty.json")); err != nil || len(e.Dialogs) != 0 {
		t.Errorf("empty list: %+v, %v", e, err)
	}
}

func TestParseDlgListHostile(t *testing.T) {
	for _, in := range []string{`{}`, `null`, `"x"`, `[1,`} {
		if _, err := ParseDlgList([]byte(in)); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: err %v, want ErrProtocol", in, err)
		}
	}
	d, err := ParseDlgList([]byte(`[7, {"call-id":"c","from_uri":"sip:a@h","to_uri":"sip:b@h","state":9,"caller":{"tag":"t"}},
		{"call-id":"c","from_uri":"sip:a@h","to_uri":"sip:b@h","state":4},
		{"call-id":"c\r\nX: y","from_uri":"sip:a@h","to_uri":"sip:b@h","state":4,"caller":{"tag":"t"}},
		{"call-id":"ok","from_uri":"sip:a@h","to_uri":"sip:b@h","state":4,"init_ts":-1,"caller":{"tag":"t"},"callee":{"tag":"u","contact":7}}]`))
	if err != nil || d.Skipped != 5 || len(d.Dialogs) != 0 {
		t.Fatalf("got %+v, %v; want all 5 entries skipped", d, err)
	}
	d, err = ParseDlgList([]byte(`[{"call-id":"ok","from_uri":"sip:a@h","to_uri":"sip:b@h","state":4,"init_ts":-1,"caller":{"tag":"t"},"callee":{"tag":"u","contact":null}}]`))
	if err != nil || len(d.Dialogs) != 1 || !d.Dialogs[0].Created.IsZero() || d.Dialogs[0].ToTag != "u" {
		t.Fatalf("got %+v, %v", d, err)
	}
}
