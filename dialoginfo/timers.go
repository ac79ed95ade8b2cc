package dialoginfo

import (
	"time"

	"github.com/puaside/puaside/sched"
)

// SchedEntry is the call's place in the tracker's timer heap.
func (c *call) SchedEntry() *sched.Entry { return &c.timer }

// deadline is the next time something is due for a call (0 = nothing).
func (t *Tracker) deadline(c *call) int64 {
	var next int64
	min := func(v int64) {
		if next == 0 || v < next {
			next = v
		}
	}
	for _, b := range c.Branches {
		switch {
		case b.Removed:
		case b.State == stTerminated:
			min(b.Ended + int64(t.cfg.TerminatedLinger))
		case b.State < stConfirmed:
			min(c.Created + int64(t.cfg.RingTimeout))
			min(c.Active + int64(t.cfg.LifetimeCap))
		default:
			min(c.Active + int64(t.cfg.LifetimeCap))
		}
	}
	return next
}

// schedule arms the call's timer for its next deadline. Must hold mu.
func (t *Tracker) schedule(c *call) {
	if d := t.deadline(c); d != 0 {
		t.sched.Schedule(c, time.Unix(0, d))
	} else {
		t.sched.Cancel(c)
	}
}

// Expire runs every timer due at now: ring timeouts, lifetime caps and the
// removal of lingering terminated documents. The tracker's clock runs it
// when the earliest is due; tests may call it directly.
func (t *Tracker) Expire(now time.Time) {
	t.sched.RunDue(now)
}

// expireDue handles the calls whose timers fired at now.
func (t *Tracker) expireDue(now time.Time, due []*call) {
	n := now.UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range due {
		if t.calls[c.key] != c {
			continue // call already gone
		}
		t.expireCall(c, n)
	}
}

func (t *Tracker) expireCall(c *call, n int64) {
	changed := false
	for _, b := range c.Branches {
		switch {
		case b.Removed:
		case b.State == stTerminated:
			if b.Ended+int64(t.cfg.TerminatedLinger) <= n {
				t.removeBranch(c, b)
				changed = true
			}
		case b.State < stConfirmed && c.Created+int64(t.cfg.RingTimeout) <= n:
			t.terminate(c, b, evTimeout, evTimeout, 0, n)
			t.count("ring_timeout")
			t.log.Info("dialoginfo: early dialog timed out", "call_id", c.CallID, "aor", c.Caller)
			changed = true
		case c.Active+int64(t.cfg.LifetimeCap) <= n:
			t.terminate(c, b, evTimeout, evTimeout, 0, n)
			t.count("lifetime_cap")
			t.log.Info("dialoginfo: dialog reached lifetime_cap without BYE", "call_id", c.CallID, "aor", c.Caller)
			changed = true
		}
	}
	allRemoved := true
	for _, b := range c.Branches {
		if !b.Removed {
			allRemoved = false
		}
	}
	if allRemoved {
		t.dropCall(c)
		return
	}
	if changed {
		t.sync(c)
		return
	}
	t.schedule(c)
}
