package usrloc

// Counts returns how many AoRs have at least one registered contact and
// how many contacts they have in all (the registrations and contacts
// gauges).
func (t *Tracker) Counts() (registrations, contacts int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, st := range t.aors {
		if len(st.contacts) > 0 {
			registrations++
			contacts += len(st.contacts)
		}
	}
	return registrations, contacts
}
