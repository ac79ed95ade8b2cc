package bla

import (
	"context"
	"fmt"
	"slices"
)

// LinesChange says what SetConfigLines changed, by line AoR.
type LinesChange struct {
	Added, Removed, Updated []string
}

// Empty reports whether nothing changed.
func (c LinesChange) Empty() bool {
	return len(c.Added) == 0 && len(c.Removed) == 0 && len(c.Updated) == 0
}

// SetConfigLines replaces the lines of the configuration file at run time
// (a configuration reload). A configured line that is gone loses its
// phones' subscriptions and publications; a line whose members changed is
// reconciled with its known contacts at once; a new line has no contacts
// yet: feed it the registrations (ContactsChanged) to subscribe its phones.
// Lines kept in the database are left alone, except one the file now names,
// which the file takes over. A configured line that is gone and that the
// database also holds (hidden by the file's line) is the database's line
// again at once, with its stored members, reconciled with its known
// contacts (reported as Updated). A bad line changes nothing.
func (m *Manager) SetConfigLines(ctx context.Context, lines []LineConfig) (LinesChange, error) {
	next := make(map[string]*line, len(lines))
	for _, lc := range lines {
		ln, err := m.newLine(lc.AoR, lc.Members, SourceConfig)
		if err != nil {
			return LinesChange{}, fmt.Errorf("bla: reload: %w", err)
		}
		next[ln.aor] = ln
	}
	var ch LinesChange
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, aor := range sortedKeys(m.lines) {
		ln := m.lines[aor]
		if ln.source != SourceConfig || next[aor] != nil {
			continue
		}
		if ln.inStore {
			err := m.restoreStored(ctx, ln)
			if err == nil {
				ch.Updated = append(ch.Updated, aor)
				continue
			}
			m.log.Error("bla: stored shared line not restored, line removed", "aor", aor, "err", err)
		}
		for _, id := range sortedKeys(ln.phones) {
			m.dropPhone(ln, ln.phones[id], "line removed from the configuration")
		}
		delete(m.lines, aor)
		ch.Removed = append(ch.Removed, aor)
	}
	for _, aor := range sortedKeys(next) {
		nl := next[aor]
		old := m.lines[aor]
		if old == nil {
			m.lines[aor] = nl
			ch.Added = append(ch.Added, aor)
			continue
		}
		if old.source == SourceConfig && slices.Equal(old.members, nl.members) {
			continue
		}
		old.source = SourceConfig
		old.members, old.match = nl.members, nl.match
		m.reconcile(ctx, old)
		ch.Updated = append(ch.Updated, aor)
	}
	slices.Sort(ch.Updated)
	m.cfg.Lines = slices.Clone(lines)
	return ch, nil
}

// restoreStored puts the line's row of the database back in effect after
// the file dropped the line: its stored members, reconciled with the known
// contacts (phones that stay members keep their subscriptions). m.mu is
// held.
func (m *Manager) restoreStored(ctx context.Context, ln *line) error {
	ln.members, ln.match = nil, nil // not the file's arrays, not stored's
	if err := ln.setMembers(ln.stored, m.cfg.DefaultDomain); err != nil {
		return fmt.Errorf("restore stored line %s: %w", ln.aor, err)
	}
	ln.source = SourceDB
	m.reconcile(ctx, ln)
	m.log.Info("bla: shared line dropped from the configuration, the stored line is back in effect",
		"aor", ln.aor, "members", len(ln.members))
	return nil
}
