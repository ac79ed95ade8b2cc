package mgmttest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/puaside/puaside/mgmt"
)

// Rule is one authorization rule as Policy lists it.
type Rule struct {
	Presentity string `json:"presentity"`
	Watcher    string `json:"watcher"`
	Action     string `json:"action"`
	Source     string `json:"source"`
}

// Policy is an in-memory mgmt.Policy: rules by presentity and watcher,
// listed in name order; an address with a space is invalid.
type Policy struct {
	mu    sync.Mutex
	rules map[[2]string]string
}

// NewPolicy returns an empty Policy.
func NewPolicy() *Policy { return &Policy{rules: map[[2]string]string{}} }

// PolicyRules implements mgmt.Policy.
func (p *Policy) PolicyRules() any {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := []Rule{}
	for k, a := range p.rules {
		out = append(out, Rule{Presentity: k[0], Watcher: k[1], Action: a, Source: "database"})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Presentity != out[j].Presentity {
			return out[i].Presentity < out[j].Presentity
		}
		return out[i].Watcher < out[j].Watcher
	})
	return out
}

// PutPolicyRule implements mgmt.Policy.
func (p *Policy) PutPolicyRule(_ context.Context, r mgmt.PolicyRuleParams) error {
	if strings.ContainsAny(r.Presentity+r.Watcher, " \t") {
		return fmt.Errorf("%w: an address holds a space", mgmt.ErrInvalid)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules[[2]string{r.Presentity, r.Watcher}] = r.Action
	return nil
}

// DeletePolicyRule implements mgmt.Policy.
func (p *Policy) DeletePolicyRule(_ context.Context, presentity, watcher string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := [2]string{presentity, watcher}
	if _, ok := p.rules[k]; !ok {
		return fmt.Errorf("%w: no rule", mgmt.ErrNotFound)
	}
	delete(p.rules, k)
	return nil
}
