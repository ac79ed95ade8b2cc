package pa

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/puaside/puaside/aor"
)

// RuleStore keeps the authorization rules managed at run time (through
// the management API), so that they survive a restart; implemented by
// *store.DB.
type RuleStore interface {
	// LoadPolicyRules returns every stored rule.
	LoadPolicyRules(ctx context.Context) ([]Rule, error)
	// SavePolicyRule stores r, replacing the rule of the same presentity
	// and watcher.
	SavePolicyRule(ctx context.Context, r Rule) error
	// DeletePolicyRule removes the rule of presentity and watcher and
	// reports whether there was one.
	DeletePolicyRule(ctx context.Context, presentity, watcher string) (bool, error)
}

// ErrBadRule is wrapped by the errors of a rule that cannot be kept.
var ErrBadRule = errors.New("pa: invalid policy rule")

// maxRuleAddress bounds a rule's presentity or watcher (its column).
const maxRuleAddress = 255

// RuleInfo is one rule as Rules lists it.
type RuleInfo struct {
	Presentity string `json:"presentity"`
	Watcher    string `json:"watcher"`
	Action     string `json:"action"`
	// Source is "database" (managed through the API) or "config"
	// (pa.policy.rules).
	Source string `json:"source"`
}

// NormalizeRule checks r and returns it in the form it is kept and
// matched in: an AoR as its key ("sip:alice@example.com"), a domain in
// lower case, the action one of allow, pending, deny.
func NormalizeRule(r Rule) (Rule, error) {
	switch r.Action {
	case actionAllow, actionPending, actionDeny:
	default:
		return Rule{}, fmt.Errorf("%w: action %q is not one of allow, pending, deny", ErrBadRule, r.Action)
	}
	var err error
	if r.Presentity, err = normalizeRuleAddress("presentity", r.Presentity); err != nil {
		return Rule{}, err
	}
	if r.Watcher, err = normalizeRuleAddress("watcher", r.Watcher); err != nil {
		return Rule{}, err
	}
	return r, nil
}

func normalizeRuleAddress(field, s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	if len(s) > maxRuleAddress {
		return "", fmt.Errorf("%w: %s: longer than %d bytes", ErrBadRule, field, maxRuleAddress)
	}
	if strings.Contains(s, "@") {
		k, err := aor.Normalize(s, "")
		if err != nil {
			return "", fmt.Errorf("%w: %s %q: %w", ErrBadRule, field, s, err)
		}
		if len(k) > maxRuleAddress {
			return "", fmt.Errorf("%w: %s: longer than %d bytes", ErrBadRule, field, maxRuleAddress)
		}
		return k, nil
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return "", fmt.Errorf("%w: %s %q: want an AoR or a domain", ErrBadRule, field, s)
		}
	}
	return strings.ToLower(s), nil
}

// specificity ranks a rule address: an AoR, a domain, any.
func specificity(s string) int {
	switch {
	case s == "":
		return 0
	case strings.Contains(s, "@"):
		return 2
	}
	return 1
}

// sortRules orders the database rules most specific first: by presentity
// (AoR, domain, any), then watcher, then by name.
func sortRules(rs []Rule) {
	sort.Slice(rs, func(i, j int) bool {
		a, b := rs[i], rs[j]
		if x, y := specificity(a.Presentity), specificity(b.Presentity); x != y {
			return x > y
		}
		if x, y := specificity(a.Watcher), specificity(b.Watcher); x != y {
			return x > y
		}
		if a.Presentity != b.Presentity {
			return a.Presentity < b.Presentity
		}
		return a.Watcher < b.Watcher
	})
}

// loadRules reads the stored rules (at Start).
func (s *Server) loadRules(ctx context.Context) error {
	if s.o.Rules == nil {
		return nil
	}
	rs, err := s.o.Rules.LoadPolicyRules(ctx)
	if err != nil {
		return fmt.Errorf("pa: load policy rules: %w", err)
	}
	kept := make([]Rule, 0, len(rs))
	for _, r := range rs {
		n, err := NormalizeRule(r)
		if err != nil {
			s.log.Warn("stored policy rule ignored", "presentity", r.Presentity, "watcher", r.Watcher, "err", err)
			continue
		}
		kept = append(kept, n)
	}
	sortRules(kept)
	s.rulesMu.Lock()
	s.dbRules = kept
	s.rulesMu.Unlock()
	return nil
}

// Rules lists the rules in the order they are checked: the database's,
// then the configuration's.
func (s *Server) Rules() []RuleInfo {
	s.rulesMu.RLock()
	defer s.rulesMu.RUnlock()
	out := make([]RuleInfo, 0, len(s.dbRules)+len(s.cfg.Policy.Rules))
	for _, r := range s.dbRules {
		out = append(out, RuleInfo{Presentity: r.Presentity, Watcher: r.Watcher, Action: r.Action, Source: "database"})
	}
	for _, r := range s.cfg.Policy.Rules {
		out = append(out, RuleInfo{Presentity: r.Presentity, Watcher: r.Watcher, Action: r.Action, Source: "config"})
	}
	return out
}

// PutRule stores a rule (replacing the one of the same presentity and
// watcher) and applies it to the live subscriptions it now decides: a
// pending one it allows becomes active, one it denies ends
// (terminated;reason=rejected). Without a RuleStore the rule lasts until
// the process ends.
func (s *Server) PutRule(ctx context.Context, r Rule) error {
	r, err := NormalizeRule(r)
	if err != nil {
		return err
	}
	if s.o.Rules != nil {
		if err := s.o.Rules.SavePolicyRule(ctx, r); err != nil {
			return fmt.Errorf("pa: save policy rule: %w", err)
		}
	}
	s.rulesMu.Lock()
	rs := make([]Rule, 0, len(s.dbRules)+1)
	for _, x := range s.dbRules {
		if x.Presentity != r.Presentity || x.Watcher != r.Watcher {
			rs = append(rs, x)
		}
	}
	rs = append(rs, r)
	sortRules(rs)
	s.dbRules = rs
	s.rulesMu.Unlock()
	s.reconsider(r)
	return nil
}

// DeleteRule removes the stored rule of presentity and watcher and
// reports whether there was one. Live subscriptions keep their state.
func (s *Server) DeleteRule(ctx context.Context, presentity, watcher string) (bool, error) {
	var err error
	if presentity, err = normalizeRuleAddress("presentity", presentity); err != nil {
		return false, err
	}
	if watcher, err = normalizeRuleAddress("watcher", watcher); err != nil {
		return false, err
	}
	found := false
	if s.o.Rules != nil {
		if found, err = s.o.Rules.DeletePolicyRule(ctx, presentity, watcher); err != nil {
			return false, fmt.Errorf("pa: delete policy rule: %w", err)
		}
	}
	s.rulesMu.Lock()
	rs := s.dbRules[:0:0]
	for _, x := range s.dbRules {
		if x.Presentity == presentity && x.Watcher == watcher {
			found = true
			continue
		}
		rs = append(rs, x)
	}
	s.dbRules = rs
	s.rulesMu.Unlock()
	return found, nil
}

// rule returns the action of the first rule naming presURI and
// watcherURI: the database's, then the configuration's.
func (s *Server) rule(presURI, watcherURI string) (string, bool) {
	s.rulesMu.RLock()
	for _, r := range s.dbRules {
		if matches(r.Presentity, presURI) && matches(r.Watcher, watcherURI) {
			s.rulesMu.RUnlock()
			return r.Action, true
		}
	}
	s.rulesMu.RUnlock()
	return s.cfg.Policy.rule(presURI, watcherURI)
}

// reconsider applies the policy again to the live subscriptions that r
// names (presence.winfo is the owner's and is left alone).
func (s *Server) reconsider(r Rule) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.subs {
		if w.final || w.event == EventWinfo || !matches(r.Presentity, w.presURI) || !matches(r.Watcher, w.watcherURI) {
			continue
		}
		switch s.authorize(w.presURI, w.watcherURI) {
		case actionDeny:
			s.terminate(w, "rejected")
		case actionAllow:
			if w.status != "active" {
				s.activate(w)
			}
		}
	}
}
