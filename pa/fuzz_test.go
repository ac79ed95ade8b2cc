package pa

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/pidf"
)

// FuzzPublicationBody feeds any body as a publication of each event
// package: parseBody refuses it with a classified error or the compositor
// turns it (beside a valid publication) into a document its watchers can
// parse, for a plain watcher and for a dialog;sla phone whose own dialogs
// are left out.
func FuzzPublicationBody(f *testing.F) {
	for _, glob := range []string{"../pidf/testdata/presence/*", "../dialogdoc/testdata/notify/*", "testdata/*.xml"} {
		files, _ := filepath.Glob(glob)
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			for ev := range byte(4) {
				f.Add(ev, b)
			}
		}
	}
	f.Add(byte(3), []byte("Messages-Waiting: yes\r\nVoice-Message: 2/8 (0/2)\r\n"))
	s, err := New(DefaultConfig(), Options{OwnDialog: func(_, id string) bool { return len(id)%2 == 0 }})
	if err != nil {
		f.Fatal(err)
	}
	events := []string{EventPresence, EventDialog, EventSLA, EventMWI}
	valid := map[string][]byte{
		EventPresence: presenceBody("sip:a@example.com", "v", "open"),
		EventDialog:   dialogBody("sip:a@example.com", 1, dialogdoc.Dialog{ID: "v", State: "early"}),
		EventSLA:      dialogBody("sip:a@example.com", 1, dialogdoc.Dialog{ID: "v", State: "early"}),
		EventMWI:      []byte("Messages-Waiting: no\r\n"),
	}
	f.Fuzz(func(t *testing.T, evb byte, body []byte) {
		ev := events[int(evb)%len(events)]
		p := &publication{id: pubID{presKey{"sip:a@example.com", ev}, "fuzz"}, body: body}
		if err := parseBody(ev, body, DefaultConfig().MaxBodySize, p); err != nil {
			if !errors.Is(err, pidf.ErrEmptyBody) && !errors.Is(err, pidf.ErrTooLarge) && !errors.Is(err, pidf.ErrDoctype) &&
				!errors.Is(err, pidf.ErrMalformed) && !errors.Is(err, dialogdoc.ErrEmptyBody) && !errors.Is(err, dialogdoc.ErrTooLarge) &&
				!errors.Is(err, dialogdoc.ErrDoctype) && !errors.Is(err, dialogdoc.ErrMalformed) {
				t.Fatalf("unclassified refusal: %v", err)
			}
			return
		}
		v := &publication{id: pubID{presKey{"sip:a@example.com", ev}, "valid"}, body: valid[ev]}
		if err := parseBody(ev, v.body, 0, v); err != nil {
			t.Fatal(err)
		}
		pr := &presentity{key: p.id.presKey, pubs: []*publication{v, p}, watchers: map[*watcher]struct{}{}}
		for _, wev := range []string{ev, EventMA} {
			if wev == EventMA && ev != EventDialog {
				continue
			}
			w := &watcher{pres: pr, presURI: "sip:a@example.com", event: wev, status: "active", version: 7, contact: "sip:w@h"}
			s.mu.Lock()
			out, _ := s.body(w)
			s.mu.Unlock()
			switch ev {
			case EventPresence:
				// Elements relying on another default namespace are
				// composed as written; a document still splits.
				if d := p.pidf.Namespaces[""]; d == pidf.Namespace {
					if _, err := pidf.Split(out, 8*pidf.DefaultMaxSize); err != nil {
						t.Fatalf("composed presence does not split: %v\n%s", err, out)
					}
				}
			case EventDialog, EventSLA:
				doc, err := dialogdoc.Parse(out, 8*dialogdoc.DefaultMaxSize)
				if err != nil {
					t.Fatalf("composed dialog-info does not parse: %v\n%s", err, out)
				}
				if doc.Version != 7 {
					t.Fatalf("version %d, want the watcher's 7", doc.Version)
				}
				if ev == EventSLA {
					for _, d := range doc.Dialogs {
						if len(d.ID)%2 == 0 {
							t.Fatalf("the watcher's own dialog %q told", d.ID)
						}
					}
				}
			}
		}
	})
}

// FuzzNormalizeRule feeds any presentity and watcher to NormalizeRule (the
// API's rules): it is refused with ErrBadRule, or kept in a form that is
// stable (normalizing it again changes nothing) and that fits its column.
func FuzzNormalizeRule(f *testing.F) {
	files, _ := filepath.Glob("testdata/rules/*")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b[:len(b)-1]), "partner.example")
		f.Add("example.com", string(b[:len(b)-1]))
	}
	f.Fuzz(func(t *testing.T, pres, watcher string) {
		r, err := NormalizeRule(Rule{Presentity: pres, Watcher: watcher, Action: actionAllow})
		if err != nil {
			if !errors.Is(err, ErrBadRule) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		again, err := NormalizeRule(r)
		if err != nil || again != r {
			t.Fatalf("not stable: %+v -> %+v, %v", r, again, err)
		}
		if len(r.Presentity) > maxRuleAddress || len(r.Watcher) > maxRuleAddress {
			t.Fatalf("too long: %+v", r)
		}
	})
}
