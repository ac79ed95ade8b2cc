package bla

import (
	"context"
	"fmt"
	"slices"
	"sort"
)

// Lines returns a snapshot of the shared lines, by AoR.
func (m *Manager) Lines() []LineInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]LineInfo, 0, len(m.lines))
	for _, aor := range sortedKeys(m.lines) {
		ln := m.lines[aor]
		li := LineInfo{AoR: aor, Source: ln.source, Members: append([]string{}, ln.members...),
			Phones: []PhoneInfo{}, Seized: []SeizedIndex{}}
		for _, id := range sortedKeys(ln.phones) {
			p := ln.phones[id]
			pi := PhoneInfo{ID: id, Contact: p.contact, Expires: p.expires,
				Subscribed: p.subscribed, Published: p.published, LastNotify: p.lastNotify, Dialogs: len(p.dialogs)}
			if sl, ok := m.sub.(subscriptionLookup); ok {
				if info, ok := sl.Subscription(m.subKey(aor, id)); ok {
					pi.SubscriptionState = info.State
				}
			}
			li.Phones = append(li.Phones, pi)
			for _, did := range sortedKeys(p.dialogs) {
				d := p.dialogs[did]
				if d.LineID != "" && d.Holds() {
					li.Seized = append(li.Seized, SeizedIndex{Index: d.LineID, PhoneID: id, Contact: p.contact,
						DialogID: d.ID, State: d.State, Held: d.Held})
				}
			}
		}
		sort.SliceStable(li.Seized, func(i, j int) bool { return li.Seized[i].Index < li.Seized[j].Index })
		out = append(out, li)
	}
	return out
}

// AddLine creates or replaces (members) a shared line kept in the database.
// Contacts already registered are picked up at their next registration
// change (or at once for a line that existed with other members).
func (m *Manager) AddLine(ctx context.Context, aor string, members []string) error {
	if m.store == nil {
		return fmt.Errorf("bla: add line %s: %w", aor, ErrNoStore)
	}
	ln, err := m.newLine(aor, members, SourceDB)
	if err != nil {
		return fmt.Errorf("bla: add line: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.lines[ln.aor]
	if old != nil && old.source == SourceConfig {
		return fmt.Errorf("bla: add line %s: %w", ln.aor, ErrStaticLine)
	}
	if err := m.store.SaveSharedLine(ctx, ln.aor, ln.members); err != nil {
		return fmt.Errorf("bla: add line %s: %w", ln.aor, err)
	}
	if old == nil {
		ln.inStore, ln.stored = true, slices.Clone(ln.members)
		m.lines[ln.aor] = ln
		m.log.Info("bla: shared line added", "aor", ln.aor, "members", len(ln.members))
		return nil
	}
	old.members, old.match = ln.members, ln.match
	old.inStore, old.stored = true, slices.Clone(ln.members)
	m.reconcile(ctx, old)
	m.log.Info("bla: shared line updated", "aor", ln.aor, "members", len(ln.members))
	return nil
}

// RemoveLine deletes a shared line kept in the database, ending its
// subscriptions and publications.
func (m *Manager) RemoveLine(ctx context.Context, aor string) error {
	if m.store == nil {
		return fmt.Errorf("bla: remove line %s: %w", aor, ErrNoStore)
	}
	naor, err := lineKey(aor, m.cfg.DefaultDomain)
	if err != nil {
		return fmt.Errorf("bla: remove line: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ln := m.lines[naor]
	if ln == nil {
		return fmt.Errorf("bla: remove line %s: %w", naor, ErrUnknownLine)
	}
	if ln.source == SourceConfig {
		return fmt.Errorf("bla: remove line %s: %w", naor, ErrStaticLine)
	}
	if _, err := m.store.DeleteSharedLine(ctx, naor); err != nil {
		return fmt.Errorf("bla: remove line %s: %w", naor, err)
	}
	for _, id := range sortedKeys(ln.phones) {
		m.dropPhone(ln, ln.phones[id], "line removed")
	}
	delete(m.lines, naor)
	m.log.Info("bla: shared line removed", "aor", naor)
	return nil
}

func sortedKeys[V any](mp map[string]V) []string {
	keys := make([]string, 0, len(mp))
	for k := range mp {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
