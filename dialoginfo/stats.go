package dialoginfo

// ActiveDialogs returns how many dialogs (call branches) are not yet
// terminated (the active dialogs gauge).
func (t *Tracker) ActiveDialogs() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, c := range t.calls {
		for _, b := range c.Branches {
			if !b.Removed && b.State != stTerminated {
				n++
			}
		}
	}
	return n
}
