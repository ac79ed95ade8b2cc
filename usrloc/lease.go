package usrloc

import "time"

// leaseMargin is added to a contact's remaining lifetime in the Expires of
// its AoR's publication (Kamailio's pua_usrloc asks the contact's expiry
// + 1 s).
const leaseMargin = time.Second

// publishExpires is the Expires asked for the AoR's publication:
// publish_expires, but never more than the remaining lifetime of its
// longest-lived contact + leaseMargin (or, for the closed document,
// closed_linger + leaseMargin), rounded up to a second. A publication left
// behind by a crash then ends at the server when its contacts would have.
func (t *Tracker) publishExpires(st *aorState, now time.Time, closed bool) time.Duration {
	var rem time.Duration
	if closed {
		rem = t.cfg.ClosedLinger
	} else {
		var last time.Time
		for _, b := range st.contacts {
			if b.Expires.After(last) {
				last = b.Expires
			}
		}
		if last.IsZero() {
			return t.cfg.PublishExpires
		}
		rem = last.Sub(now)
	}
	rem = max(rem, 0) + leaseMargin
	rem = (rem + time.Second - 1).Truncate(time.Second)
	if t.cfg.PublishExpires > 0 && t.cfg.PublishExpires < rem {
		return t.cfg.PublishExpires
	}
	return rem
}

// leaseTooShort reports whether the Expires asked for the AoR's current
// document is less than half of what its contacts now allow (they were
// refreshed since): the document is published again with the longer
// Expires instead of being refreshed with a lease that is now needlessly
// short.
func leaseTooShort(asked, allowed time.Duration) bool {
	return asked > 0 && asked < allowed/2
}
