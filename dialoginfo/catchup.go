package dialoginfo

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// CatchUp corrects the tracker with the calls the store holds, for an
// instance joining a cluster whose other instances are running: the call
// messages they received between their last flush before this instance's
// Start and the moment its inputs were bound reach it only through the
// store. asOf is the time up to which the store is complete (the inputs
// have been bound for longer than the others' flush_interval by then). A
// call this tracker received input about after asOf is left as it is;
// every other stored call whose dialogs differ from what the tracker holds
// replaces it, and a call the tracker holds as live but the store no
// longer has (it ended elsewhere) is terminated, as EndCall does. Document
// versions take the larger of the stored and the held. It returns the
// number of calls changed.
func (t *Tracker) CatchUp(ctx context.Context, asOf time.Time) (int, error) {
	if t.store == nil {
		return 0, nil
	}
	vers, err := t.store.LoadDialogVersions(ctx)
	if err != nil {
		return 0, fmt.Errorf("dialoginfo: catch up: load versions: %w", err)
	}
	recs, err := t.store.LoadDialogs(ctx)
	if err != nil {
		return 0, fmt.Errorf("dialoginfo: catch up: load dialogs: %w", err)
	}
	at := asOf.UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	for e, v := range vers {
		if v > t.versions[e] {
			t.versions[e] = v
		}
	}
	stored := make(map[string]*call, len(recs))
	for _, r := range recs {
		if c, err := decodeCall(r); err == nil {
			stored[c.key] = c
		}
	}
	keys := make([]string, 0, len(stored))
	for k := range stored {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	changed := 0
	for _, k := range keys {
		c := stored[k]
		cur := t.calls[k]
		if cur != nil && (cur.touched > at || sameDialogs(cur, c)) {
			continue
		}
		if cur != nil {
			t.sched.Cancel(cur)
		}
		for _, b := range c.Branches {
			// Published into this instance's engine again: what the
			// other instance sent is not what this one's engine holds.
			b.Sent = [2]uint64{}
		}
		t.calls[k] = c
		t.sync(c)
		changed++
	}
	now := t.now().UnixNano()
	for k, cur := range t.calls {
		if _, ok := stored[k]; ok || cur.touched > at || cur.over() {
			continue
		}
		for _, b := range cur.Branches {
			if b.State != stTerminated {
				t.terminate(cur, b, "", "", 0, now)
			}
		}
		t.sync(cur)
		changed++
	}
	if changed > 0 {
		t.count("caught_up")
	}
	return changed, nil
}

// sameDialogs reports whether two copies of a call hold the same dialogs
// in the same states.
func sameDialogs(a, b *call) bool {
	if len(a.Branches) != len(b.Branches) {
		return false
	}
	for i, x := range a.Branches {
		y := b.Branches[i]
		if x.ID != y.ID || x.ToTag != y.ToTag || x.State != y.State || x.Removed != y.Removed || x.Hold != y.Hold {
			return false
		}
	}
	return true
}
