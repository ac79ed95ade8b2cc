package pa

import (
	"strings"

	"github.com/puaside/puaside/aor"
)

// Authorization outcomes.
const (
	actionAllow   = "allow"
	actionPending = "pending"
	actionDeny    = "deny"
)

// authorize applies the policy to a new subscription.
func (s *Server) authorize(presURI, watcherURI string) string {
	return s.cfg.Policy.decide(presURI, watcherURI, s.o.LocalDomain)
}

// decide returns allow, pending or deny for watcherURI watching presURI:
// the first rule naming both (or leaving them empty) wins, else the
// default. "local" allows watchers of the presentity's domain, or of a
// domain local says is local, and holds the others pending.
func (p Policy) decide(presURI, watcherURI string, local func(string) bool) string {
	for _, r := range p.Rules {
		if matches(r.Presentity, presURI) && matches(r.Watcher, watcherURI) {
			return r.Action
		}
	}
	switch p.Default {
	case "allow":
		return actionAllow
	case "pending":
		return actionPending
	case "deny":
		return actionDeny
	}
	wd := aor.Domain(watcherURI)
	if wd != "" && (wd == aor.Domain(presURI) || local != nil && local(wd)) {
		return actionAllow
	}
	return actionPending
}

// matches reports whether a rule's address (empty, an AoR or a domain)
// names uri.
func matches(rule, uri string) bool {
	rule = strings.TrimSpace(rule)
	if rule == "" {
		return true
	}
	if strings.Contains(rule, "@") {
		return aor.Key(rule) == uri
	}
	return strings.EqualFold(rule, aor.Domain(uri))
}
