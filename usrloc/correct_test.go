package usrloc

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/internal/puatest/recorder"
)

func TestCorrectBindingsAddsAndRemoves(t *testing.T) {
	r := newRig(t, DefaultConfig(), nil, nil)
	asOf := r.clock.Now()
	r.clock.Advance(time.Second)
	aor := "sip:alice@example.com"
	if !r.t.CorrectBindings(aor, []event.Contact{{URI: "sip:alice@10.0.0.1", Expires: 300, Q: -1}}, asOf, 0) {
		t.Fatal("correction of an unknown AoR refused")
	}
	// The remaining lifetime counts from the time the registrar was asked,
	// and is not raised to min_expires.
	if got := r.contacts(aor); len(got) != 1 || got[0] != "sip:alice@10.0.0.1 4m59s q=-" {
		t.Fatalf("contacts %v", got)
	}
	ops := r.pub.Take()
	if len(ops) != 1 || (ops[0].Kind == recorder.Remove) || !strings.Contains(string(ops[0].Req.Body), "<basic>open</basic>") {
		t.Fatalf("ops %+v, want one open publication", ops)
	}
	if len(r.changes) != 1 {
		t.Fatalf("OnChange %v", r.changes)
	}

	asOf = r.clock.Now()
	if !r.t.CorrectBindings(aor, nil, asOf, 0) {
		t.Fatal("removal refused")
	}
	ops = r.pub.Take()
	if len(ops) != 1 || !strings.Contains(string(ops[0].Req.Body), "<basic>closed</basic>") {
		t.Fatalf("ops %+v, want the closed document", ops)
	}
	if got := r.contacts(aor); len(got) != 0 {
		t.Fatalf("contacts after removal %v", got)
	}
}

func TestCorrectBindingsYieldsToNewerInput(t *testing.T) {
	r := newRig(t, DefaultConfig(), nil, nil)
	aor := "sip:alice@example.com"
	asOf := r.clock.Now()
	r.clock.Advance(time.Second)
	// A REGISTER arrives after the registrar was asked.
	if err := r.t.ApplyRegistration(context.Background(), event.Registration{AoR: aor,
		Contacts: []event.Contact{{URI: "sip:alice@10.0.0.1", Expires: 600, Q: -1}}}); err != nil {
		t.Fatal(err)
	}
	r.pub.Take()
	if r.t.CorrectBindings(aor, nil, asOf, 0) {
		t.Fatal("an older snapshot removed a newer registration")
	}
	if len(r.contacts(aor)) != 1 || len(r.pub.Take()) != 0 {
		t.Fatal("the refused correction changed something")
	}
	// A grace reaches further back.
	r.clock.Advance(time.Second)
	if r.t.CorrectBindings(aor, nil, r.clock.Now(), 2*time.Second) {
		t.Fatal("input within the grace before the snapshot was overruled")
	}
	// Later snapshots apply.
	r.clock.Advance(time.Second)
	if !r.t.CorrectBindings(aor, nil, r.clock.Now(), 0) {
		t.Fatal("a newer snapshot was refused")
	}
}

func TestCorrectBindingsCapsAndRefreshes(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxExpires = 600 * time.Second
	r := newRig(t, cfg, nil, nil)
	aor := "sip:bob@example.com"
	now := r.clock.Now()
	r.t.CorrectBindings(aor, []event.Contact{{URI: "sip:bob@h", Expires: 5000, Q: 0.5}, {URI: "sip:bob@gone", Expires: 0}}, now, 0)
	if got := r.contacts(aor); len(got) != 1 || got[0] != "sip:bob@h 10m0s q=0.5" {
		t.Fatalf("contacts %v", got)
	}
	r.pub.Take()
	// A refresh the tracker missed only moves the expiry: nothing is published.
	r.clock.Advance(time.Minute)
	r.t.CorrectBindings(aor, []event.Contact{{URI: "sip:bob@h", Expires: 600, Q: 0.5}}, r.clock.Now(), 0)
	if got := r.contacts(aor); len(got) != 1 || got[0] != "sip:bob@h 10m0s q=0.5" {
		t.Fatalf("contacts after refresh %v", got)
	}
	if ops := r.pub.Take(); len(ops) != 0 {
		t.Fatalf("a refresh published %+v", ops)
	}
}

// TestCorrectBindingsKeepsDomainIndex: an AoR learned from the registrar
// makes its domain local (dialoginfo's domains: [] follows the registered
// users), and forgetting it again unmakes it.
func TestCorrectBindingsKeepsDomainIndex(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ClosedLinger = 0
	r := newRig(t, cfg, nil, nil)
	aor := "sip:alice@branch.example.com"
	r.t.CorrectBindings(aor, []event.Contact{{URI: "sip:alice@10.0.0.1", Expires: 300, Q: -1}}, r.clock.Now(), 0)
	if !r.t.HasDomain("branch.example.com") {
		t.Fatal("the domain of an AoR added by reconciliation is not known")
	}
	r.t.CorrectBindings(aor, nil, r.clock.Now(), 0)
	if r.t.HasDomain("branch.example.com") {
		t.Fatal("the domain of an AoR gone at the registrar is still known")
	}
}
