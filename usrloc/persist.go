package usrloc

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/puaside/puaside/pua"
)

// Start loads the stored flags and contacts, drops the expired ones and
// re-arms the timers. Nothing is published for an AoR whose document did
// not change while puaside was down: the engine still holds and refreshes
// that publication. When the Publisher is a PublicationLister, its stored
// publications are compared with the loaded state (and orphans closed).
// When the Publisher is a Claimer, the publications of the loaded AoRs are
// claimed and the claims are done when Start returns, even on error.
func (t *Tracker) Start(ctx context.Context) error {
	if cl, ok := t.pub.(Claimer); ok {
		defer cl.ClaimsDone(pua.FlagUsrloc)
		defer func() {
			t.mu.Lock()
			t.claimLoaded(cl)
			t.mu.Unlock()
		}()
	}
	var stored map[string][]Binding
	flags := map[string]bool{}
	if t.store != nil {
		var err error
		if flags, err = t.store.LoadFlags(ctx); err != nil {
			return fmt.Errorf("usrloc: start: load flags: %w", err)
		}
		if stored, err = t.store.LoadContacts(ctx); err != nil {
			return fmt.Errorf("usrloc: start: load contacts: %w", err)
		}
	}
	pubs := map[string]pua.PublicationInfo{}
	lister, haveLister := t.pub.(PublicationLister)
	if haveLister {
		for _, p := range lister.Publications() {
			if p.Key.Event == "presence" && p.Key.ID == t.cfg.PresID && p.Flag&pua.FlagUsrloc != 0 {
				pubs[p.Key.PresURI] = p
			}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now()
	for aor, on := range flags {
		t.flags[aor] = on
	}
	closedDigest := func(aor string) docDigest {
		return digestOf(BuildPIDF(Entity(aor, t.cfg.EntityPrefix), nil))
	}
	for aor, bs := range stored {
		st := &aorState{aor: aor}
		t.putAoR(st)
		sort.Slice(bs, func(i, j int) bool { return bs[i].URI < bs[j].URI })
		var live []Binding
		for _, b := range bs {
			if b.Expires.After(now) {
				live = append(live, b)
			} else {
				t.count("contact_expired")
			}
		}
		if p, ok := pubs[aor]; ok {
			st.published, st.digest = true, digestOf(p.Body)
			st.closed = st.digest == closedDigest(aor)
			delete(pubs, aor)
			if st.closed && len(live) > 0 {
				// The engine stores a document within milliseconds, the
				// table every flush_interval: a closed document over
				// live stored bindings is an unREGISTER (or the
				// bindings' removal) after the table's last flush, cut
				// off by a crash. Publishing the stored bindings would
				// show a phone that is gone as open until they expire.
				t.count("contact_removed_at_restart")
				t.log.Info("usrloc: stored bindings ended by the engine's closed document", "aor", aor, "bindings", len(live))
				live = nil
			}
		} else if !haveLister && len(bs) > 0 && t.publishOn(aor) {
			// Assume the engine holds the document of the stored set.
			st.published, st.digest = true, digestOf(BuildPIDF(Entity(aor, t.cfg.EntityPrefix), bs))
		}
		if len(live) != len(bs) {
			t.dirty[aor] = struct{}{}
		}
		st.contacts = live
		t.syncPublication(st, now)
		t.schedule(st)
	}
	for aor, p := range pubs {
		if len(p.Body) == 0 {
			// A publication puaside did not write (one adopted from
			// Kamailio's pua_usrloc, whose body Kamailio never keeps):
			// its registration is unknown here, not gone. The engine
			// keeps it until its lifetime ends; the next REGISTER of
			// the AoR (or reconciliation) publishes over it.
			continue
		}
		// A publication without stored contacts (e.g. a closed document
		// still lingering at shutdown): close it and let it go.
		st := &aorState{aor: aor, published: true, digest: digestOf(p.Body)}
		st.closed = st.digest == closedDigest(aor)
		t.putAoR(st)
		t.syncPublication(st, now)
		t.schedule(st)
	}
	t.log.Info("usrloc: loaded", "aors", len(t.aors), "flags", len(t.flags))
	return nil
}

// Run flushes changes to the store every flush_interval until ctx ends;
// then it flushes once more and stops the timers. Contacts expire on the
// tracker's clock.
func (t *Tracker) Run(ctx context.Context) error {
	defer t.sched.Stop()
	tick := make(chan struct{}, 1)
	for {
		tm := t.clock.AfterFunc(t.cfg.FlushInterval, func() {
			select {
			case tick <- struct{}{}:
			default:
			}
		})
		select {
		case <-ctx.Done():
			tm.Stop()
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			err := t.Flush(fctx)
			cancel()
			return err
		case <-tick:
			if err := t.Flush(ctx); err != nil {
				t.log.Error("usrloc: flush", "err", err)
			}
			t.pruneInputs()
		}
	}
}

// Flush writes the changed contacts and flags to the store.
func (t *Tracker) Flush(ctx context.Context) error {
	if t.store == nil {
		return nil
	}
	start := time.Now()
	contacts, cerr := t.flushContacts(ctx)
	flags, ferr := t.flushFlags(ctx)
	if contacts+flags == 0 && ferr == nil {
		return nil
	}
	err := errors.Join(cerr, ferr)
	t.m.StoreFlush(time.Since(start), err)
	if err != nil {
		return fmt.Errorf("usrloc: flush: %w", err)
	}
	return nil
}

// flushContacts writes the bindings of the changed AoRs, and reports how
// many AoRs it wrote (or tried to: on error they stay to write).
func (t *Tracker) flushContacts(ctx context.Context) (int, error) {
	t.mu.Lock()
	if len(t.dirty) == 0 {
		t.mu.Unlock()
		return 0, nil
	}
	save := make(map[string][]Binding, len(t.dirty))
	for aor := range t.dirty {
		var bs []Binding
		if st := t.aors[aor]; st != nil {
			bs = st.contacts // never changed in place (aorState)
		}
		save[aor] = bs
	}
	t.dirty = map[string]struct{}{}
	t.mu.Unlock()
	if err := t.store.SaveContacts(ctx, save); err != nil {
		t.mu.Lock()
		for aor := range save {
			t.dirty[aor] = struct{}{}
		}
		t.mu.Unlock()
		return len(save), fmt.Errorf("contacts: %w", err)
	}
	return len(save), nil
}

// flushFlags writes the per-user flags set or forgotten by REGISTER
// headers and JSON events since the last flush, and reports how many it
// wrote (or tried to: a failed one stays to write unless set again since).
// SetFlag and ClearFlag wait for it (flagWrites), so that it never writes a
// flag older than theirs.
func (t *Tracker) flushFlags(ctx context.Context) (int, error) {
	if err := t.lockFlagWrites(ctx); err != nil {
		return 0, fmt.Errorf("flags: %w", err)
	}
	defer t.unlockFlagWrites()
	t.mu.Lock()
	flags := t.dirtyFlags
	if len(flags) > 0 {
		t.dirtyFlags = map[string]*bool{}
	}
	t.mu.Unlock()
	var errs []error
	for aor, v := range flags {
		var err error
		if v == nil {
			err = t.store.DeleteFlag(ctx, aor)
		} else {
			err = t.store.SetFlag(ctx, aor, *v)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("flag of %s: %w", aor, err))
			t.mu.Lock()
			if _, newer := t.dirtyFlags[aor]; !newer {
				t.dirtyFlags[aor] = v
			}
			t.mu.Unlock()
		}
	}
	return len(flags), errors.Join(errs...)
}
