package usrloc

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/event"
)

// TestCatchUpTakesTheStoreExceptNewerInput: an instance joining a cluster
// loaded the contacts at Start; the others then stored what it missed
// before its inputs were bound (bob registered, carol unregistered).
// CatchUp takes the stored sets, published as changes, except for an AoR
// the tracker received input about after asOf (dave, not yet flushed by
// the others); an AoR that did not change is neither written nor
// published again.
func TestCatchUpTakesTheStoreExceptNewerInput(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	r := newRig(t, DefaultConfig(), st, nil)
	now := r.clock.Now()
	bind := func(uri string) []Binding {
		return []Binding{{URI: uri, Expires: now.Add(10 * time.Minute), Q: -1}}
	}
	if err := st.SaveContacts(ctx, map[string][]Binding{
		"sip:alice@example.com": bind("sip:alice@10.0.0.1"),
		"sip:carol@example.com": bind("sip:carol@10.0.0.3"),
	}); err != nil {
		t.Fatal(err)
	}
	if err := r.t.Start(ctx); err != nil {
		t.Fatal(err)
	}
	r.pub.Take()
	// What the others received before this instance's inputs were bound.
	if err := st.SaveContacts(ctx, map[string][]Binding{
		"sip:bob@example.com":   bind("sip:bob@10.0.0.2"),
		"sip:carol@example.com": nil,
	}); err != nil {
		t.Fatal(err)
	}
	bound := r.clock.Now()
	r.clock.Advance(time.Second)
	if err := r.t.ApplyRegistration(ctx, event.Registration{AoR: "sip:dave@example.com",
		Contacts: []event.Contact{{URI: "sip:dave@10.0.0.4", Expires: 600, Q: -1}}}); err != nil {
		t.Fatal(err)
	}
	r.pub.Take()
	r.changes = nil

	n, err := r.t.CatchUp(ctx, bound)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("CatchUp changed %d AoRs, want 2 (bob, carol)", n)
	}
	for aor, want := range map[string]int{"sip:alice@example.com": 1, "sip:bob@example.com": 1,
		"sip:carol@example.com": 0, "sip:dave@example.com": 1} {
		if got := r.contacts(aor); len(got) != want {
			t.Errorf("%s: contacts %v, want %d", aor, got, want)
		}
	}
	var pubs []string
	for _, op := range r.pub.Take() {
		state := "closed"
		if strings.Contains(string(op.Req.Body), "<basic>open</basic>") {
			state = "open"
		}
		pubs = append(pubs, op.Req.Key.PresURI+" "+state)
	}
	slices.Sort(pubs)
	if want := []string{"sip:bob@example.com open", "sip:carol@example.com closed"}; !slices.Equal(pubs, want) {
		t.Errorf("published %v, want %v", pubs, want)
	}
	slices.Sort(r.changes)
	if want := []string{"sip:bob@example.com: sip:bob@10.0.0.2", "sip:carol@example.com:"}; !slices.Equal(r.changes, want) {
		t.Errorf("OnChange %v, want %v", r.changes, want)
	}
}
