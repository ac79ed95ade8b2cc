package dialoginfo

import "github.com/puaside/puaside/pua"

// Claimer is optionally implemented by the Publisher (the pua engine
// does). At Start the tracker claims the publications of the calls it
// loaded, then says it is done; the engine removes the dialog publications
// nobody claimed (calls the tracker no longer knows, e.g. answered just
// before a crash and never written).
type Claimer interface {
	// Claim keeps a loaded publication; it reports whether the engine holds it.
	Claim(pua.Key) bool
	// ClaimsDone says the owner of flag has claimed everything it wants.
	ClaimsDone(flag int)
}

// claimLoaded claims the publications of every loaded call; those the
// engine no longer holds are published again. Must hold mu.
func (t *Tracker) claimLoaded(cl Claimer) {
	for _, c := range t.calls {
		lost := false
		for _, b := range c.Branches {
			if b.Removed {
				continue
			}
			for s := sideCaller; s <= sideCallee; s++ {
				if !b.Published[s] {
					continue
				}
				entity := c.entity(s)
				if !cl.Claim(pua.Key{PresURI: entity, Event: "dialog", ID: t.presID(c, b, s)}) {
					b.Sent[s] = 0
					lost = true
				}
			}
		}
		if lost {
			t.sync(c)
		}
	}
}
