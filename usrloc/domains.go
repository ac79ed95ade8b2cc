package usrloc

import (
	"strings"
	"sync"

	"github.com/puaside/puaside/aor"
)

// domainIndex counts the known AoRs of each domain, for HasDomain. It has
// its own lock so that a lookup does not wait for the tracker's.
type domainIndex struct {
	mu    sync.Mutex
	count map[string]int
}

func (d *domainIndex) add(a string) {
	d.mu.Lock()
	if d.count == nil {
		d.count = map[string]int{}
	}
	d.count[aor.Domain(a)]++
	d.mu.Unlock()
}

func (d *domainIndex) remove(a string) {
	host := aor.Domain(a)
	d.mu.Lock()
	if d.count[host] <= 1 {
		delete(d.count, host)
	} else {
		d.count[host]--
	}
	d.mu.Unlock()
}

// HasDomain reports whether an AoR of the domain host (case-insensitive,
// no port) is known to the tracker: registered now, restored at start, or
// still publishing its closed document. default_domain always is.
func (t *Tracker) HasDomain(host string) bool {
	host = strings.ToLower(host)
	if host == "" {
		return false
	}
	if host == strings.ToLower(t.cfg.DefaultDomain) {
		return true
	}
	t.domains.mu.Lock()
	defer t.domains.mu.Unlock()
	return t.domains.count[host] > 0
}

// putAoR adds st to the known AoRs. Must hold mu.
func (t *Tracker) putAoR(st *aorState) {
	if _, known := t.aors[st.aor]; !known {
		t.domains.add(st.aor)
		t.takeInput(st)
	}
	t.aors[st.aor] = st
}

// dropAoR forgets st. Must hold mu.
func (t *Tracker) dropAoR(st *aorState) {
	if t.aors[st.aor] == st {
		delete(t.aors, st.aor)
		t.domains.remove(st.aor)
		t.keepInput(st)
	}
}
