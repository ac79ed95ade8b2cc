package usrloc

import (
	"fmt"
	"slices"
)

// SetPublishing replaces publish_patterns and publish_default at run time
// (a configuration reload) and re-evaluates every known AoR: those that
// become published are published, those that stop are removed. The
// contacts and the per-user flags are kept. Bad patterns change nothing.
func (t *Tracker) SetPublishing(patterns []string, publishDefault bool) error {
	pats, err := compilePatterns(patterns)
	if err != nil {
		return fmt.Errorf("usrloc: reload: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if slices.Equal(patterns, t.cfg.PublishPatterns) && publishDefault == t.cfg.PublishDefault {
		return nil
	}
	t.patterns = pats
	t.cfg.PublishPatterns = slices.Clone(patterns)
	t.cfg.PublishDefault = publishDefault
	for aor := range t.aors {
		t.resync(aor)
	}
	return nil
}
