package dialoginfo

import (
	"context"
	"fmt"

	"github.com/puaside/puaside/aor"
	"github.com/puaside/puaside/event"
)

// ApplyDialogState applies a normalised call-state event (JSON input). The
// call is identified by CallID and FromTag, the branch by ToTag. States only
// move forward; an event that would move a dialog back is ignored. Hold has
// no side in the event: both targets then carry +sip.rendering="no".
func (t *Tracker) ApplyDialogState(ctx context.Context, d event.DialogState) error {
	st := parseState(d.State)
	if d.CallID == "" || d.FromTag == "" || st == 0 {
		t.ignore("bad_event", d.CallID, "json "+d.State)
		return fmt.Errorf("%w: call_id, from_tag and a known state are required (got state %q)", ErrBadEvent, d.State)
	}
	if d.Event != "" && !validEvent(d.Event) {
		t.ignore("bad_event", d.CallID, "json event "+d.Event)
		return fmt.Errorf("%w: unknown event %q", ErrBadEvent, d.Event)
	}
	now := t.now().UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.calls[callKey(d.CallID, d.FromTag)]
	if c == nil {
		if st == stTerminated {
			t.ignore("unknown_call", d.CallID, "json terminated")
			return nil
		}
		caller, _ := aor.Normalize(d.From, "")
		callee, _ := aor.Normalize(d.To, "")
		if t.cfg.IncludeReqURI && d.RequestURI != "" {
			if a, err := aor.Normalize(d.RequestURI, ""); err == nil {
				callee = a
			}
		}
		if caller == "" || callee == "" {
			t.ignore("bad_event", d.CallID, "json without from/to")
			return fmt.Errorf("%w: from and to URIs are required for a new call", ErrBadEvent)
		}
		if t.callCapped(d.CallID, "json "+d.State) {
			return nil
		}
		c = t.newCall(d.CallID, d.FromTag, caller, d.FromDisplay, "", callee, d.ToDisplay, 0, now)
		if c == nil {
			t.ignore("not_local", d.CallID, "json")
			return nil
		}
	}
	c.touched = now
	if c.over() {
		t.ignore("after_final", d.CallID, "json "+d.State)
		return nil
	}
	var b *branch
	switch {
	case d.ToTag != "":
		b = c.branchByTag(d.ToTag)
		if b == nil {
			if st < stEarly || c.Answered && st < stConfirmed {
				t.ignore("late_provisional", d.CallID, "json "+d.State)
				return nil
			}
			if (st != stConfirmed || c.Answered) && t.branchCapped(c, d.ToTag, "json "+d.State) {
				return nil
			}
			b = c.branchFor(d.ToTag)
		}
	default:
		b = c.pending()
	}
	c.Active = now
	switch {
	case st == stTerminated && b == nil:
		ev := d.Event
		for _, o := range c.Branches {
			t.terminate(c, o, ev, ev, d.Code, now)
		}
	case b == nil:
		t.ignore("state_regression", d.CallID, "json "+d.State)
		return nil
	case st == stTerminated:
		t.terminate(c, b, d.Event, d.Event, d.Code, now)
	case st < b.State || b.State == stTerminated:
		t.ignore("state_regression", d.CallID, "json "+d.State)
		return nil
	case st == stConfirmed:
		t.answer(c, b, "", now)
	default:
		b.State = st
	}
	if b != nil && b.State != stTerminated {
		b.Hold[sideCaller], b.Hold[sideCallee] = d.Hold, d.Hold
	}
	t.sync(c)
	return nil
}
