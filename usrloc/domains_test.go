package usrloc

import (
	"context"
	"testing"
	"time"

	"github.com/puaside/puaside/event"
)

// TestHasDomain: the domains of the known AoRs (registered, restored at
// start) and default_domain are local; a domain whose last AoR is gone is
// not.
func TestHasDomain(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	st.contacts.Put("sip:bob@stored.net", []Binding{{URI: "sip:bob@10.0.0.3", Expires: time.Unix(1800000000, 0).Add(24 * time.Hour), Q: -1}})
	cfg := DefaultConfig()
	cfg.DefaultDomain = "pbx.example.org"
	r := newRig(t, cfg, st, nil)
	if err := r.t.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.t.ApplyRegistration(ctx, event.Registration{AoR: "sip:alice@Example.COM",
		Contacts: []event.Contact{{URI: "sip:alice@10.0.0.1", Expires: 60, Q: -1}}, Source: event.SourceJSON, Time: r.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{
		"example.com": true, "EXAMPLE.com": true, "stored.net": true, "pbx.example.org": true,
		"other.org": false, "": false,
	} {
		if got := r.t.HasDomain(host); got != want {
			t.Errorf("HasDomain(%q) = %v, want %v", host, got, want)
		}
	}
	if err := r.t.ApplyRegistration(ctx, event.Registration{AoR: "sip:alice@example.com", RemoveAll: true,
		Source: event.SourceJSON, Time: r.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10 && r.t.HasDomain("example.com"); i++ {
		r.clock.Advance(time.Hour)
		r.t.expireDue()
	}
	if r.t.HasDomain("example.com") {
		t.Error("example.com still local after its only AoR is gone")
	}
	if !r.t.HasDomain("stored.net") {
		t.Error("stored.net lost")
	}
}
