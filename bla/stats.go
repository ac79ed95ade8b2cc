package bla

// Counts returns the number of shared lines and of their phones holding a
// subscription (the lines gauges).
func (m *Manager) Counts() (lines, subscribedPhones int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ln := range m.lines {
		for _, p := range ln.phones {
			if p.subscribed {
				subscribedPhones++
			}
		}
	}
	return len(m.lines), subscribedPhones
}
