package usrloc

import (
	"slices"
	"strings"
	"time"

	"github.com/puaside/puaside/clock"
	"github.com/puaside/puaside/event"
)

// inputHorizon is how long the time of an AoR's last input is remembered
// for CorrectBindings; corrections older than this are not protected.
const inputHorizon = 2 * time.Minute

// CorrectBindings replaces the bindings of aor ("sip:user@domain") with
// contacts, the complete set the registrar itself holds (for example from
// Kamailio's ul.dump): contacts not listed are gone, listed ones are added
// or updated. Each contact's Expires is its remaining lifetime in seconds
// at asOf (the time the registrar was asked), capped by max_expires; a
// contact with Expires <= 0 is left out.
//
// It changes nothing, and returns false, when the tracker received input
// about aor (a REGISTER copy, a JSON event) after asOf: that input is
// newer than the registrar's answer. Changes are counted as
// contact_added / contact_removed_reconciled, published and passed to
// OnChange as any other change.
func (t *Tracker) CorrectBindings(aor string, contacts []event.Contact, asked time.Time, grace time.Duration) bool {
	applied := false
	t.update(func(now time.Time, ch *[]change) {
		if last, ok := t.lastInput(aor); ok && last.After(asked.Add(-grace)) {
			t.count("reconcile_skipped_newer")
			return
		}
		applied = true
		st := t.aors[aor]
		if st == nil {
			st = &aorState{aor: aor}
			t.putAoR(st)
		}
		next := make([]Binding, 0, len(contacts))
		for _, c := range contacts {
			exp := c.Expires
			if exp <= 0 || findBinding(next, c.URI) >= 0 {
				continue
			}
			if maxE := seconds(t.cfg.MaxExpires); maxE > 0 && exp > maxE {
				exp = maxE
			}
			next = append(next, Binding{URI: c.URI, Expires: asked.Add(time.Duration(exp) * time.Second), Q: c.Q,
				Received: c.Received, CallID: c.CallID, CSeq: c.CSeq, Instance: c.Instance, UserAgent: c.UserAgent})
		}
		slices.SortFunc(next, func(a, b Binding) int { return strings.Compare(a.URI, b.URI) })
		t.setContacts(st, next, now, "contact_removed_reconciled", false, ch)
	})
	return applied
}

// noteInput records that st's AoR received input now. Must hold mu.
func (t *Tracker) noteInput(st *aorState, now time.Time) {
	st.input = t.epoch.Stamp(now)
}

// lastInput returns the time of aor's last input, unless pruneInputs has
// forgotten it. A known AoR keeps it in its state, a forgotten one in
// inputs (see keepInput, takeInput). Must hold mu.
func (t *Tracker) lastInput(aor string) (time.Time, bool) {
	var s clock.Stamp
	if st := t.aors[aor]; st != nil {
		s = st.input
	} else {
		s = t.inputs[aor]
	}
	if s == 0 {
		return time.Time{}, false
	}
	at := t.epoch.Time(s)
	if at.Before(t.inputsCut) {
		return time.Time{}, false // pruned
	}
	return at, true
}

// keepInput moves the last input of st, an AoR being forgotten, to inputs
// unless it has been pruned already. Must hold mu.
func (t *Tracker) keepInput(st *aorState) {
	if st.input != 0 && !t.epoch.Time(st.input).Before(t.inputsCut) {
		t.inputs[st.aor] = st.input
	}
}

// takeInput moves the last input of st's AoR, known again, from inputs
// to st. Must hold mu.
func (t *Tracker) takeInput(st *aorState) {
	if s, ok := t.inputs[st.aor]; ok {
		st.input = s
		delete(t.inputs, st.aor)
	}
}

// pruneInputs forgets input times older than inputHorizon, and the 2xx
// replies and removals remembered past their time (see replied, removal).
// Those of known AoRs are not visited: lastInput ignores any before the
// cut made here.
func (t *Tracker) pruneInputs() {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now()
	limit := now.Add(-inputHorizon)
	t.inputsCut = limit
	for aor, at := range t.inputs {
		if t.epoch.Time(at).Before(limit) {
			delete(t.inputs, aor)
		}
	}
	if now.Before(t.latePruned.Add(lateHorizon / 4)) {
		return // entries past their time are ignored until then
	}
	t.latePruned = now
	for key, r := range t.replied {
		if !now.Before(r.until) {
			delete(t.replied, key)
		}
	}
	for key, r := range t.gone {
		if !now.Before(r.until) {
			delete(t.gone, key)
		}
	}
}
