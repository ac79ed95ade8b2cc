package usrloc

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// CatchUp corrects the tracker with the contacts the store holds, for an
// instance joining a cluster whose other instances are running: what they
// received between their last flush before this instance's Start and the
// moment its inputs were bound (registrations, refreshes, removals) reaches
// it only through the store. asOf is the time up to which the store is
// complete (the inputs have been bound for longer than the others'
// flush_interval by then): an AoR this tracker received input about after
// asOf keeps its bindings, every other one takes the stored set, published
// as any change. It returns the number of AoRs changed.
func (t *Tracker) CatchUp(ctx context.Context, asOf time.Time) (int, error) {
	if t.store == nil {
		return 0, nil
	}
	stored, err := t.store.LoadContacts(ctx)
	if err != nil {
		return 0, fmt.Errorf("usrloc: catch up: load contacts: %w", err)
	}
	changed := 0
	t.update(func(now time.Time, ch *[]change) {
		aors := make([]string, 0, len(stored)+len(t.aors))
		for aor := range stored {
			aors = append(aors, aor)
		}
		for aor := range t.aors {
			if _, ok := stored[aor]; !ok {
				aors = append(aors, aor)
			}
		}
		slices.Sort(aors)
		for _, aor := range aors {
			if last, ok := t.lastInput(aor); ok && last.After(asOf) {
				continue
			}
			var next []Binding
			for _, b := range stored[aor] {
				if b.Expires.After(now) && findBinding(next, b.URI) < 0 {
					next = append(next, b)
				}
			}
			slices.SortFunc(next, func(a, b Binding) int { return strings.Compare(a.URI, b.URI) })
			st := t.aors[aor]
			if st == nil {
				if len(next) == 0 {
					continue
				}
				st = &aorState{aor: aor}
				t.putAoR(st)
			}
			if sameContacts(st.contacts, next) {
				continue
			}
			t.setContacts(st, next, now, "contact_removed_caught_up", false, ch)
			changed++
		}
	})
	if changed > 0 {
		t.count("caught_up")
	}
	return changed, nil
}

// sameContacts reports whether two sorted binding sets are the same but for
// the precision of their expiries (the store keeps seconds).
func sameContacts(a, b []Binding) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		d := x.Expires.Sub(y.Expires)
		x.Expires, y.Expires = time.Time{}, time.Time{}
		if x != y || d > 2*time.Second || d < -2*time.Second {
			return false
		}
	}
	return true
}
