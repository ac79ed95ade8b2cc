package usrloc

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/puaside/puaside/event"
)

// ApplyRegistration applies a JSON registration event (a statement).
func (t *Tracker) ApplyRegistration(ctx context.Context, r event.Registration) error {
	aor, err := userAoR(r.AoR, t.cfg.DefaultDomain)
	if err != nil {
		t.reject(err, event.SourceJSON, "")
		return fmt.Errorf("usrloc: registration %q: %w", r.AoR, err)
	}
	for _, c := range r.Contacts {
		if c.URI == "" || strings.ContainsAny(c.URI, " \t\r\n<>") {
			t.reject(ErrBadContact, event.SourceJSON, c.CallID)
			return fmt.Errorf("usrloc: registration %q: contact %q: %w", r.AoR, c.URI, ErrBadContact)
		}
		if c.Q > 1 {
			t.reject(ErrBadContact, event.SourceJSON, c.CallID)
			return fmt.Errorf("usrloc: registration %q: contact %q q %v: %w", r.AoR, c.URI, c.Q, ErrBadContact)
		}
	}
	contacts := append([]event.Contact(nil), r.Contacts...)
	t.update(func(now time.Time, ch *[]change) {
		if r.Complete {
			kept := contacts[:0]
			for _, c := range contacts {
				if c.Expires != 0 {
					kept = append(kept, c)
				}
			}
			t.applyStatement(now, aor, kept, -1, false, txn{}, true, r.Publish, ch)
			return
		}
		t.applyStatement(now, aor, contacts, -1, r.RemoveAll, txn{}, false, r.Publish, ch)
	})
	return nil
}

// update runs fn under the lock and delivers the changes it collected.
func (t *Tracker) update(fn func(now time.Time, ch *[]change)) {
	var ch []change
	t.mu.Lock()
	fn(t.clock.Now(), &ch)
	if len(ch) == 0 || t.onChange == nil {
		t.mu.Unlock()
		return
	}
	t.cbMu.Lock()
	t.mu.Unlock()
	defer t.cbMu.Unlock()
	for _, c := range ch {
		t.onChange(c.aor, c.contacts)
	}
}

// expiresFor resolves and clamps an expiry in seconds (0 = remove).
func (t *Tracker) expiresFor(contact, header int) int {
	e := contact
	if e < 0 {
		e = header
	}
	if e < 0 {
		e = seconds(t.cfg.DefaultExpires)
	}
	if e == 0 {
		return 0
	}
	if e < seconds(t.cfg.MinExpires) {
		e = seconds(t.cfg.MinExpires)
	}
	if maxE := seconds(t.cfg.MaxExpires); maxE > 0 && e > maxE {
		e = maxE
	}
	return e
}

// txn names a REGISTER transaction: its Call-ID and CSeq. The zero txn is
// an input that names none (a JSON event).
type txn struct {
	callID string
	cseq   uint32
}

// notOlder reports whether b was last refreshed by a REGISTER of tx's
// Call-ID with a CSeq not lower than tx's: tx, when it is a "Contact: *",
// does not remove b (RFC 3261 §10.3 step 6).
func (tx txn) notOlder(b Binding) bool {
	return tx.callID != "" && b.CallID == tx.callID && b.CSeq >= tx.cseq
}

// applyStatement changes an AoR's bindings. complete replaces the whole
// set with contacts; otherwise contacts are added, refreshed or (expires 0)
// removed, and removeAll drops every binding but those the REGISTER wild
// ("Contact: *") is older than (zero wild: every binding). Must hold mu.
func (t *Tracker) applyStatement(now time.Time, aor string, contacts []event.Contact, hdrExpires int,
	removeAll bool, wild txn, complete bool, flag *bool, ch *[]change) {
	st := t.aors[aor]
	if st == nil {
		st = &aorState{aor: aor}
		t.putAoR(st)
	}
	t.noteInput(st, now)
	old := st.contacts
	var next []Binding
	switch {
	case complete:
	case removeAll:
		// A late copy of an older "Contact: *" leaves the bindings its
		// client refreshed since; those of other Call-IDs cannot be
		// ordered against it and go.
		for _, b := range old {
			if wild.notOlder(b) {
				next = append(next, b)
			} else if wild.callID != "" {
				t.gone[lateKey{aor, b.URI}] = removal{callID: wild.callID, cseq: wild.cseq, until: now.Add(lateHorizon)}
			}
		}
	default:
		next = append([]Binding(nil), old...)
	}
	for _, c := range contacts {
		exp := t.expiresFor(c.Expires, hdrExpires)
		if complete && c.Expires > 0 {
			exp = c.Expires // granted by the registrar: as it is, not clamped again
		}
		if !complete && c.Instance != "" && c.RegID != "" {
			// RFC 5626 §6: a new flow of the device (same instance and
			// reg-id, another contact: a reboot, a new port) replaces
			// the old one's binding.
			next = slices.DeleteFunc(next, func(b Binding) bool {
				return b.Instance == c.Instance && b.RegID == c.RegID && b.URI != c.URI
			})
		}
		i := findBinding(next, c.URI)
		if !complete && i >= 0 && next[i].CallID == c.CallID && c.CallID != "" && next[i].CSeq > c.CSeq {
			// An older, re-sent or reordered REGISTER of the same client:
			// it neither refreshes nor removes the binding (RFC 3261
			// §10.3 step 7).
			continue
		}
		if exp == 0 {
			if i >= 0 {
				next = append(next[:i], next[i+1:]...)
			}
			if !complete && c.CallID != "" {
				t.gone[lateKey{aor, c.URI}] = removal{callID: c.CallID, cseq: c.CSeq, until: now.Add(lateHorizon)}
			}
			continue
		}
		if !complete && i < 0 && c.CallID != "" && len(t.gone) > 0 {
			k := lateKey{aor, c.URI}
			if r, ok := t.gone[k]; ok && now.Before(r.until) {
				if r.callID == c.CallID && r.cseq > c.CSeq {
					// A late copy of a REGISTER older than the one that
					// removed the binding.
					t.count("register_stale")
					continue
				}
				delete(t.gone, k)
			}
		}
		b := Binding{URI: c.URI, Expires: now.Add(time.Duration(exp) * time.Second), Q: c.Q,
			Received: c.Received, CallID: c.CallID, CSeq: c.CSeq, Instance: c.Instance, RegID: c.RegID, UserAgent: c.UserAgent}
		if i >= 0 {
			next[i] = b
		} else {
			next = append(next, b)
		}
	}
	slices.SortFunc(next, func(a, b Binding) int { return strings.Compare(a.URI, b.URI) })
	flagChanged := false
	if flag != nil {
		flagChanged = t.setFlagLocked(aor, *flag)
	}
	t.setContacts(st, next, now, "contact_removed", flagChanged, ch)
}

func findBinding(bs []Binding, uri string) int {
	for i := range bs {
		if bs[i].URI == uri {
			return i
		}
	}
	return -1
}

// setContacts installs a new binding set, counts, notifies, publishes and
// re-arms the AoR's timer. Must hold mu.
func (t *Tracker) setContacts(st *aorState, next []Binding, now time.Time, removedWhat string, force bool, ch *[]change) {
	old := st.contacts
	changed := false
	for _, b := range next {
		i := findBinding(old, b.URI)
		if i < 0 {
			t.count("contact_added")
			changed = true
			continue
		}
		o := old[i]
		if o.Q != b.Q || o.Received != b.Received || o.Instance != b.Instance {
			changed = true
		}
	}
	for _, o := range old {
		if findBinding(next, o.URI) < 0 {
			t.count(removedWhat)
			changed = true
		}
	}
	if t.store != nil && !bindingsEqual(old, next) {
		t.dirty[st.aor] = struct{}{} // (without a store nothing empties it)
	}
	st.contacts = next
	if changed {
		if t.log.Enabled(context.Background(), slog.LevelDebug) {
			t.log.Debug("usrloc: bindings changed", "aor", st.aor, "contacts", len(next))
		}
		if t.onChange != nil {
			// A binding set is never changed in place (see aorState), so
			// it is handed over as it is.
			*ch = append(*ch, change{aor: st.aor, contacts: next})
		}
	}
	// The document depends only on the URIs and q values: a plain refresh
	// of a published AoR cannot change it, so skip building it.
	if changed || force || !st.published || st.closed || qChanged(old, next) {
		t.syncPublication(st, now)
	}
	t.schedule(st)
}

// qChanged reports whether any contact present in both sets changed its q.
func qChanged(old, next []Binding) bool {
	for _, b := range next {
		if i := findBinding(old, b.URI); i >= 0 && old[i].Q != b.Q {
			return true
		}
	}
	return false
}

func bindingsEqual(a, b []Binding) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
