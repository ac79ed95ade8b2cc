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
// A rule (the database's, then the configuration's) decides first; a
// presentity of the gateway has its other watchers decided by its owner
// (pending until the owner answers), the others get the default.
func (s *Server) authorize(presURI, watcherURI string) string {
	if a, ok := s.rule(presURI, watcherURI); ok {
		return a
	}
	if s.servedByGateway(presURI) {
		return actionPending
	}
	return s.cfg.Policy.fallback(presURI, watcherURI, s.o.LocalDomain)
}

// rule returns the action of the first configured rule naming presURI
// and watcherURI.
func (p Policy) rule(presURI, watcherURI string) (string, bool) {
	for _, r := range p.Rules {
		if matches(r.Presentity, presURI) && matches(r.Watcher, watcherURI) {
			return r.Action, true
		}
	}
	return "", false
}

// fallback is the default's answer for watcherURI watching presURI when
// no rule names them. "local" allows watchers of the presentity's domain,
// or of a domain local says is local, and holds the others pending.
func (p Policy) fallback(presURI, watcherURI string, local func(string) bool) string {
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
