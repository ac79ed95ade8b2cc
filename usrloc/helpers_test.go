package usrloc

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/clock/clocktest"
	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/internal/puatest"
	"github.com/puaside/puaside/internal/puatest/recorder"
	"github.com/puaside/puaside/pua"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// readSIP loads testdata/sip/<name>.sip as wire bytes (CRLF line ends).
func readSIP(t testing.TB, name string) []byte {
	t.Helper()
	return puatest.WireSIP(puatest.ReadFile(t, "testdata", "sip", name+".sip"))
}

// loadSIP parses a fixture.
func loadSIP(t testing.TB, name string) sip.Message {
	t.Helper()
	return puatest.ParseSIP(t, readSIP(t, name))
}

// golden compares got with testdata/<path>, rewriting it with -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", path)
	if *update {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", p, got, want)
	}
}

// fakeClock is a manual clock.
type fakeClock = clocktest.Fake

func newFakeClock() *fakeClock { return clocktest.New(time.Unix(1800000000, 0)) }

// listerPub is a recorder that also lists publications (pubs).
type listerPub struct {
	*recorder.Recorder
	pubs []pua.PublicationInfo
}

func (p listerPub) Publications() []pua.PublicationInfo { return p.pubs }

// memStore is an in-memory Store: two tables of the kit.
type memStore struct {
	contacts *puatest.Table[string, []Binding]
	flags    *puatest.Table[string, bool]
}

func newMemStore() *memStore {
	return &memStore{contacts: puatest.NewTable[string, []Binding](), flags: puatest.NewTable[string, bool]()}
}

func (s *memStore) LoadContacts(context.Context) (map[string][]Binding, error) {
	out := s.contacts.Rows()
	for k, v := range out {
		out[k] = slices.Clone(v)
	}
	return out, nil
}

func (s *memStore) SaveContacts(_ context.Context, m map[string][]Binding) error {
	return s.contacts.Write(func(rows map[string][]Binding) {
		for k, v := range m {
			if len(v) == 0 {
				delete(rows, k)
				continue
			}
			rows[k] = slices.Clone(v)
		}
	})
}

func (s *memStore) LoadFlags(context.Context) (map[string]bool, error) { return s.flags.Rows(), nil }

func (s *memStore) SetFlag(_ context.Context, aor string, on bool) error {
	return s.flags.Write(func(rows map[string]bool) { rows[aor] = on })
}

func (s *memStore) DeleteFlag(_ context.Context, aor string) error {
	return s.flags.Write(func(rows map[string]bool) { delete(rows, aor) })
}

// rig is a tracker with fakes.
type rig struct {
	t       *Tracker
	pub     *recorder.Recorder
	clock   *fakeClock
	store   *memStore
	changes []string
}

func newRig(t *testing.T, cfg Config, st *memStore, pub Publisher) *rig {
	t.Helper()
	r := &rig{clock: newFakeClock(), store: st}
	if pub == nil {
		r.pub = recorder.New()
		pub = r.pub
	} else if lp, ok := pub.(listerPub); ok {
		r.pub = lp.Recorder
	}
	tr, err := New(cfg, Options{Publisher: pub, Store: st, Clock: r.clock,
		OnChange: func(aor string, cs []Binding) {
			s := aor + ":"
			for _, c := range cs {
				s += " " + c.URI
			}
			r.changes = append(r.changes, s)
		}})
	if err != nil {
		t.Fatal(err)
	}
	r.t = tr
	return r
}

// feed passes a fixture to HandleSIP from the given source.
func (r *rig) feed(t *testing.T, name string, src event.Source) {
	t.Helper()
	r.t.HandleSIP(context.Background(), event.SIP{Msg: loadSIP(t, name), Source: src})
}

// contacts returns "uri expires-in-seconds q" lines of an AoR.
func (r *rig) contacts(aor string) []string {
	in, ok := r.t.Registration(aor)
	if !ok {
		return nil
	}
	var out []string
	for _, b := range in.Contacts {
		out = append(out, b.URI+" "+b.Expires.Sub(r.clock.Now()).String()+" q="+formatQ(b.Q))
	}
	sort.Strings(out)
	return out
}

func formatQ(q float64) string {
	if q < 0 {
		return "-"
	}
	return strconv.FormatFloat(q, 'f', -1, 64)
}
