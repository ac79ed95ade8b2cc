package bla

import (
	"github.com/puaside/puaside/aor"
	"github.com/puaside/puaside/pua"
)

// Claimer is the part of the pua engine that takes the claims of its
// owners at start (implemented by *pua.Engine).
type Claimer interface {
	// Claim keeps a loaded publication.
	Claim(pua.Key) bool
	// ClaimSubscription keeps a loaded subscription.
	ClaimSubscription(pua.SubKey) bool
	// ClaimsDone says the owner of flag has claimed everything it wants.
	ClaimsDone(flag int)
}

// ClaimRestored ends the start of the manager, after RestoreSubscriptions
// and the first ContactsChanged of every registered AoR: it claims the
// subscription and the publication of every phone whose contact is still
// registered, forgets the restored phones whose contact was not reported
// (the engine removes their subscription and publication), then says the
// claims of pua.FlagBLASubscribe and pua.FlagBLAPublish are done.
func (m *Manager) ClaimRestored(cl Claimer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, key := range sortedKeys(m.lines) {
		ln := m.lines[key]
		live := make(map[string]bool, len(ln.contacts))
		for _, c := range ln.contacts {
			if uri := aor.AddrSpec(c.URI); uri != "" && ln.isMember(uri) {
				live[ContactID(uri)] = true
			}
		}
		for _, id := range sortedKeys(ln.phones) {
			if !live[id] {
				m.log.Debug("bla: restored phone not registered, left to the sweep", "aor", ln.aor, "id", id)
				delete(ln.phones, id)
				continue
			}
			cl.ClaimSubscription(m.subKey(ln.aor, id))
			cl.Claim(m.pubKey(ln.aor, id))
		}
	}
	cl.ClaimsDone(pua.FlagBLASubscribe)
	cl.ClaimsDone(pua.FlagBLAPublish)
}
