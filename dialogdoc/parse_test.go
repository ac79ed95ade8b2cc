package dialogdoc

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/puaside/puaside/internal/puatest"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	return puatest.Testdata(t, name)
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		file string
		want Document
	}{
		{"notify/wire_trying.xml", Document{Version: 1, State: DocPartial, Entity: "sip:pol1@example.com",
			Dialogs: []Dialog{{ID: "d1", Direction: "initiator", State: "trying", LineID: "0"}}}},
		{"notify/wire_terminated.xml", Document{Version: 1, State: DocPartial, Entity: "sip:pol1@example.com",
			Dialogs: []Dialog{{ID: "d1", Direction: "initiator", State: "terminated", LineID: "0"}}}},
		{"notify/a_trying_1.xml", Document{Version: 3, State: DocPartial, Entity: "sip:100@example.com",
			Dialogs: []Dialog{{ID: "a1", Direction: "initiator", State: "trying", LineID: "1"}}}},
		{"notify/a_confirmed_1.xml", Document{Version: 4, State: DocPartial, Entity: "sip:100@example.com",
			Dialogs: []Dialog{{ID: "a1", CallID: "call-a1@10.0.0.1", LocalTag: "la1", RemoteTag: "ra1",
				Direction: "initiator", State: "confirmed", LineID: "1", Remote: &Participant{Identity: "sip:4444@example.com"}}}}},
		{"notify/a_full_two.xml", Document{Version: 10, State: DocFull, Entity: "sip:100@example.com",
			Dialogs: []Dialog{
				{ID: "a1", CallID: "c1@10.0.0.1", LocalTag: "l1", RemoteTag: "r1", Direction: "recipient",
					State: "confirmed", LineID: "1", Held: true, Remote: &Participant{Identity: "sip:4444@example.com"}},
				{ID: "a3", Direction: "initiator", State: "early", LineID: "3"},
			}}},
		{"notify/a_full_empty.xml", Document{Version: 11, State: DocFull, Entity: "sip:100@example.com"}},
		{"notify/sipxsaa_confirmed_0.xml", Document{Version: 0, State: DocPartial, Entity: "sip:321@177.0.0.1:54140",
			Dialogs: []Dialog{{ID: "1", CallID: "call-1116603513-890@10.1.1.153", LocalTag: "264460498",
				RemoteTag: "1c10982", Direction: "recipient", State: "confirmed", LineID: "0", Remote: &Participant{Identity: "4444@10.1.1.153"}}}}},
		{"notify/ma_trying_1.xml", Document{Version: 2, State: DocPartial, Entity: "sip:100@example.com",
			Dialogs: []Dialog{{ID: "m1", Direction: "initiator", State: "trying", LineID: "1"}}}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			got, err := Parse(readTestdata(t, tc.file), DefaultMaxSize)
			if err != nil {
				t.Fatal(err)
			}
			if !got.HasVersion {
				t.Errorf("version attribute not seen")
			}
			for i := range got.Dialogs {
				if !bytes.HasPrefix(got.Dialogs[i].Raw, []byte("<dialog ")) || !bytes.HasSuffix(got.Dialogs[i].Raw, []byte("</dialog>")) {
					t.Errorf("dialog %d raw element %q", i, got.Dialogs[i].Raw)
				}
				got.Dialogs[i].Raw = nil
			}
			if ns := got.Namespaces(); ns[""] != Namespace {
				t.Errorf("default namespace %q, want %s", ns[""], Namespace)
			}
			got.HasVersion, got.root, got.rootName, got.namespaces = false, nil, "", nil
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", *got, tc.want)
			}
		})
	}
}

func TestParseBad(t *testing.T) {
	big := append([]byte(`<dialog-info version="1" state="full" entity="sip:a@b">`),
		bytes.Repeat([]byte(" "), 1<<20)...)
	big = append(big, []byte(`</dialog-info>`)...)
	deep := strings.Repeat("<a>", 100) + strings.Repeat("</a>", 100)
	for _, tc := range []struct {
		name string
		body []byte
		want error
	}{
		{"empty", nil, ErrEmptyBody},
		{"blank", []byte(" \r\n\t"), ErrEmptyBody},
		{"megabyte", big, ErrTooLarge},
		{"billion laughs", readTestdata(t, "bad/billion_laughs.xml"), ErrDoctype},
		{"external entity", readTestdata(t, "bad/external_entity.xml"), ErrDoctype},
		{"undefined entity", readTestdata(t, "bad/undefined_entity.xml"), ErrMalformed},
		{"not xml", readTestdata(t, "bad/not_xml.txt"), ErrMalformed},
		{"wrong root", readTestdata(t, "bad/wrong_root.xml"), ErrMalformed},
		{"dialog without id", readTestdata(t, "bad/dialog_without_id.xml"), ErrMalformed},
		{"dialog without state", readTestdata(t, "bad/dialog_without_state.xml"), ErrMalformed},
		{"bad version", readTestdata(t, "bad/bad_version.xml"), ErrMalformed},
		{"bad document state", readTestdata(t, "bad/bad_doc_state.xml"), ErrMalformed},
		{"two roots", readTestdata(t, "bad/two_roots.xml"), ErrMalformed},
		{"truncated", readTestdata(t, "bad/truncated.xml"), ErrMalformed},
		{"latin1", readTestdata(t, "bad/latin1.xml"), ErrMalformed},
		{"deep nesting", []byte(`<dialog-info>` + deep + `</dialog-info>`), ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.body, DefaultMaxSize)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v (doc %+v)", err, tc.want, got)
			}
			if got != nil {
				t.Errorf("document returned with error: %+v", got)
			}
		})
	}
}
