package usrloc

import "github.com/puaside/puaside/pua"

// Claimer is optionally implemented by the Publisher (the pua engine
// does). At Start the tracker claims the publications of the AoRs it
// loaded, then says it is done; the engine removes the usrloc publications
// nobody claimed (AoRs whose contacts were never written before a crash).
type Claimer interface {
	// Claim keeps a loaded publication; it reports whether the engine holds it.
	Claim(pua.Key) bool
	// ClaimsDone says the owner of flag has claimed everything it wants.
	ClaimsDone(flag int)
}

// claimLoaded claims the publication of every AoR still published; one
// the engine no longer holds is published again. Must hold mu.
func (t *Tracker) claimLoaded(cl Claimer) {
	now := t.clock.Now()
	for aor, st := range t.aors {
		if st.published && !cl.Claim(t.key(aor)) {
			st.published, st.digest = false, docDigest{}
			t.syncPublication(st, now)
			t.schedule(st)
		}
	}
}
