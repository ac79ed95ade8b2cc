package pa

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/puaside/puaside/internal/sipphone"
)

// memRules is a RuleStore in memory (the SQL one is tested in store).
type memRules struct {
	mu sync.Mutex
	rs map[[2]string]Rule
}

func (m *memRules) LoadPolicyRules(context.Context) ([]Rule, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Rule
	for _, r := range m.rs {
		out = append(out, r)
	}
	return out, nil
}

func (m *memRules) SavePolicyRule(_ context.Context, r Rule) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rs[[2]string{r.Presentity, r.Watcher}] = r
	return nil
}

func (m *memRules) DeletePolicyRule(_ context.Context, p, w string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.rs[[2]string{p, w}]
	delete(m.rs, [2]string{p, w})
	return ok, nil
}

func TestNormalizeRule(t *testing.T) {
	got, err := NormalizeRule(Rule{Presentity: " Alice@Example.COM ", Watcher: "Partner.Example", Action: "allow"})
	want := Rule{Presentity: "sip:Alice@example.com", Watcher: "partner.example", Action: "allow"}
	if err != nil || got != want {
		t.Fatalf("NormalizeRule: %+v, %v; want %+v", got, err, want)
	}
	for _, r := range []Rule{
		{Action: "maybe"},
		{Watcher: "bad domain", Action: "deny"},
		{Presentity: "sip:@", Action: "deny"},
		{Watcher: strings.Repeat("a", 300), Action: "deny"},
		{Watcher: strings.Repeat("a", 250) + "@b.c", Action: "deny"}, // 259 bytes with sip:
	} {
		if _, err := NormalizeRule(r); !errors.Is(err, ErrBadRule) {
			t.Errorf("NormalizeRule(%+v): %v, want ErrBadRule", r, err)
		}
	}
}

// A rule put at run time decides the live subscriptions it names (a
// pending watcher allowed, a denied one ended) and new ones (403), is
// listed before the configuration's, and survives a restart through the
// RuleStore; deleted, the default decides again.
func TestPutRule(t *testing.T) {
	store := &memRules{rs: map[[2]string]Rule{}}
	cfg := DefaultConfig()
	cfg.Policy.Rules = []Rule{{Watcher: "elsewhere.org", Action: "pending"}}
	s, addr := startServer(t, cfg, Options{Rules: store})
	ctx := context.Background()
	eve := sipphone.NewPhone(t, "eve", "elsewhere.org")
	we, err := eve.Watch(ctx, addr, uri("sip:alice@example.com"), "presence", sipphone.WatchOptions{Expires: 600})
	if err != nil {
		t.Fatal(err)
	}
	wait(t, we, func(n sipphone.Notification) bool { return strings.HasPrefix(n.State, "pending") })
	if err := s.PutRule(ctx, Rule{Presentity: "alice@example.com", Watcher: "eve@elsewhere.org", Action: "allow"}); err != nil {
		t.Fatal(err)
	}
	wait(t, we, func(n sipphone.Notification) bool { return strings.HasPrefix(n.State, "active") })
	wantRules := []RuleInfo{
		{Presentity: "sip:alice@example.com", Watcher: "sip:eve@elsewhere.org", Action: "allow", Source: "database"},
		{Watcher: "elsewhere.org", Action: "pending", Source: "config"},
	}
	if got := s.Rules(); !reflect.DeepEqual(got, wantRules) {
		t.Fatalf("Rules: %+v, want %+v", got, wantRules)
	}
	if err := s.PutRule(ctx, Rule{Action: "sometimes"}); !errors.Is(err, ErrBadRule) {
		t.Fatalf("bad rule: %v", err)
	}

	// A domain rule is less specific than the AoR rule: eve stays active,
	// the domain's others are denied.
	if err := s.PutRule(ctx, Rule{Watcher: "elsewhere.org", Action: "deny"}); err != nil {
		t.Fatal(err)
	}
	mallory := sipphone.NewPhone(t, "mallory", "elsewhere.org")
	if _, err := mallory.Watch(ctx, addr, uri("sip:alice@example.com"), "presence", sipphone.WatchOptions{Expires: 600}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("denied watcher: %v, want 403", err)
	}
	// The AoR rule turned to deny ends eve's live subscription.
	if err := s.PutRule(ctx, Rule{Presentity: "sip:alice@example.com", Watcher: "sip:eve@elsewhere.org", Action: "deny"}); err != nil {
		t.Fatal(err)
	}
	n := wait(t, we, func(n sipphone.Notification) bool { return n.Terminated() })
	if n.State != "terminated;reason=rejected" {
		t.Fatalf("denied live watcher: %q", n.State)
	}

	// Another server on the same store: the rules are back.
	s2, addr2 := startServer(t, cfg, Options{Rules: store})
	if got := len(s2.Rules()); got != 3 {
		t.Fatalf("rules after a restart: %+v", s2.Rules())
	}
	if _, err := mallory.Watch(ctx, addr2, uri("sip:alice@example.com"), "presence", sipphone.WatchOptions{Expires: 600}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("denied watcher after a restart: %v, want 403", err)
	}
	if ok, err := s2.DeleteRule(ctx, "", "Elsewhere.org"); err != nil || !ok {
		t.Fatalf("DeleteRule: %v, %v", ok, err)
	}
	if ok, err := s2.DeleteRule(ctx, "", "elsewhere.org"); err != nil || ok {
		t.Fatalf("DeleteRule again: %v, %v", ok, err)
	}
	w3, err := mallory.Watch(ctx, addr2, uri("sip:alice@example.com"), "presence", sipphone.WatchOptions{Expires: 600})
	if err != nil {
		t.Fatal(err)
	}
	wait(t, w3, func(n sipphone.Notification) bool { return strings.HasPrefix(n.State, "pending") })
}
