package usrloc

import (
	"context"
	"testing"
	"time"
	"unsafe"

	"github.com/puaside/puaside/event"
)

// TestAoRStateSize: one aorState is held per AoR, 100,000 on a large
// registrar; it must stay within the 96-byte allocation size class.
func TestAoRStateSize(t *testing.T) {
	if got := unsafe.Sizeof(aorState{}); got > 96 {
		t.Fatalf("aorState is %d bytes, want at most 96 (one per AoR, 100,000 held)", got)
	}
}

// TestInputRememberedOverForget: the time of an AoR's last input protects
// it from an older correction (CorrectBindings) for inputHorizon, whether
// the AoR is still known, forgotten meanwhile (unregistered, its closed
// document removed) or known again; the protection ends when pruneInputs
// forgets the input time, not before.
func TestInputRememberedOverForget(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ClosedLinger = 0 // an unregistered AoR is forgotten at once
	r := newRig(t, cfg, nil, nil)
	ctx := context.Background()
	contact := []event.Contact{{URI: "sip:x@10.0.0.9", Expires: 300, Q: -1}}
	register := func(aor string, expires int) {
		t.Helper()
		if err := r.t.ApplyRegistration(ctx, event.Registration{AoR: aor,
			Contacts: []event.Contact{{URI: "sip:x@10.0.0.1", Expires: expires, Q: -1}}}); err != nil {
			t.Fatal(err)
		}
	}
	known := func(aor string) bool { _, ok := r.t.Registration(aor); return ok }
	const alice, bob, carol = "sip:alice@example.com", "sip:bob@example.com", "sip:carol@example.com"

	before := r.clock.Now()
	r.clock.Advance(time.Second)
	register(alice, 600) // stays known
	register(bob, 600)   // unregistered: forgotten
	register(bob, 0)
	register(carol, 600) // forgotten, then known again
	register(carol, 0)
	if !known(alice) || known(bob) || known(carol) {
		t.Fatal("alice should be known, bob and carol forgotten")
	}
	r.clock.Advance(time.Second)
	if !r.t.CorrectBindings(carol, contact, r.clock.Now(), 0) || !known(carol) {
		t.Fatal("a newer correction of a forgotten AoR was refused")
	}
	for _, aor := range []string{alice, bob, carol} {
		if r.t.CorrectBindings(aor, contact, before, 0) {
			t.Fatalf("%s: a correction older than the last input was applied", aor)
		}
	}
	r.t.mu.Lock()
	held := len(r.t.inputs)
	r.t.mu.Unlock()
	if held != 1 {
		t.Fatalf("%d input times held outside the AoRs' state, want 1 (bob's)", held)
	}

	// Past the horizon, the input times stay until pruned.
	r.clock.Advance(inputHorizon + time.Second)
	for _, aor := range []string{alice, bob} {
		if r.t.CorrectBindings(aor, contact, before, 0) {
			t.Fatalf("%s: an input time past the horizon forgotten before pruneInputs", aor)
		}
	}
	r.t.pruneInputs()
	for _, aor := range []string{alice, bob} {
		if !r.t.CorrectBindings(aor, contact, before, 0) {
			t.Fatalf("%s: a pruned input time still refuses a correction", aor)
		}
	}
	r.t.mu.Lock()
	held = len(r.t.inputs)
	r.t.mu.Unlock()
	if held != 0 {
		t.Fatalf("%d input times held after pruning", held)
	}
	// carol's last input (her unREGISTER; a correction is none) was pruned
	// too.
	if !r.t.CorrectBindings(carol, nil, before, 0) {
		t.Fatal("carol: a pruned input time still refuses a correction")
	}
}
