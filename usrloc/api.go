package usrloc

import (
	"context"
	"fmt"
	"sort"
)

// Registrations lists every known AoR, sorted.
func (t *Tracker) Registrations() []AoRInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]AoRInfo, 0, len(t.aors))
	for _, st := range t.aors {
		out = append(out, t.info(st))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AoR < out[j].AoR })
	return out
}

// Registration returns one AoR ("sip:user@domain", "user@domain" or a bare
// user with default_domain).
func (t *Tracker) Registration(aor string) (AoRInfo, bool) {
	a, err := userAoR(aor, t.cfg.DefaultDomain)
	if err != nil {
		return AoRInfo{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.aors[a]
	if !ok {
		return AoRInfo{}, false
	}
	return t.info(st), true
}

func (t *Tracker) info(st *aorState) AoRInfo {
	in := AoRInfo{AoR: st.aor, Entity: Entity(st.aor, t.cfg.EntityPrefix),
		Contacts: append([]Binding{}, st.contacts...), Publish: t.publishOn(st.aor)}
	if v, ok := t.flags[st.aor]; ok {
		in.Flag = &v
	}
	switch {
	case st.published && st.closed:
		in.State = "closed"
	case st.published:
		in.State = "open"
	}
	return in
}

// SetFlag stores the per-user publishing flag of an AoR (written to the
// store at once) and publishes or removes its presence accordingly. A
// flush writing an older flag of the AoR is waited for, so that the flag
// stored is this one.
func (t *Tracker) SetFlag(ctx context.Context, aor string, on bool) error {
	a, err := userAoR(aor, t.cfg.DefaultDomain)
	if err != nil {
		return fmt.Errorf("usrloc: set flag %q: %w", aor, err)
	}
	if err := t.lockFlagWrites(ctx); err != nil {
		return fmt.Errorf("usrloc: set flag %q: %w", a, err)
	}
	defer t.unlockFlagWrites()
	if t.store != nil {
		if err := t.store.SetFlag(ctx, a, on); err != nil {
			return fmt.Errorf("usrloc: set flag %q: %w", a, err)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flags[a] = on
	delete(t.dirtyFlags, a)
	t.resync(a)
	return nil
}

// ClearFlag forgets the per-user flag of an AoR: patterns and
// publish_default decide again. As SetFlag, it waits for a flush writing
// an older flag of the AoR.
func (t *Tracker) ClearFlag(ctx context.Context, aor string) error {
	a, err := userAoR(aor, t.cfg.DefaultDomain)
	if err != nil {
		return fmt.Errorf("usrloc: clear flag %q: %w", aor, err)
	}
	if err := t.lockFlagWrites(ctx); err != nil {
		return fmt.Errorf("usrloc: clear flag %q: %w", a, err)
	}
	defer t.unlockFlagWrites()
	if t.store != nil {
		if err := t.store.DeleteFlag(ctx, a); err != nil {
			return fmt.Errorf("usrloc: clear flag %q: %w", a, err)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.flags, a)
	delete(t.dirtyFlags, a)
	t.resync(a)
	return nil
}

// lockFlagWrites waits, until ctx ends, for the right to write per-user
// flags to the store (see Tracker.flagWrites). Must not hold mu.
func (t *Tracker) lockFlagWrites(ctx context.Context) error {
	select {
	case t.flagWrites <- struct{}{}:
		return nil
	default:
	}
	select {
	case t.flagWrites <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for a flush of the flags: %w", context.Cause(ctx))
	}
}

// unlockFlagWrites gives up the right lockFlagWrites took.
func (t *Tracker) unlockFlagWrites() { <-t.flagWrites }

// resync re-evaluates an AoR's publication after a flag change. Must hold mu.
func (t *Tracker) resync(aor string) {
	if st := t.aors[aor]; st != nil {
		t.syncPublication(st, t.clock.Now())
		t.schedule(st)
	}
}

// Flags returns the stored per-user publishing flags.
func (t *Tracker) Flags() map[string]bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]bool, len(t.flags))
	for k, v := range t.flags {
		out[k] = v
	}
	return out
}

// setFlagLocked records a per-user flag from a request header.
// It reports whether the flag changed.
func (t *Tracker) setFlagLocked(aor string, on bool) bool {
	if cur, ok := t.flags[aor]; ok && cur == on {
		return false
	}
	t.flags[aor] = on
	v := on
	t.dirtyFlags[aor] = &v
	return true
}
