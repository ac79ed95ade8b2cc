package usrloc

import (
	"time"

	"github.com/puaside/puaside/sched"
)

// schedule re-arms the AoR's timer (earliest contact expiry or linger end)
// and forgets AoRs with nothing left. Must hold mu.
func (t *Tracker) schedule(st *aorState) {
	var due time.Time
	for _, b := range st.contacts {
		if due.IsZero() || b.Expires.Before(due) {
			due = b.Expires
		}
	}
	if st.linger != 0 {
		if l := time.Unix(0, st.linger); due.IsZero() || l.Before(due) {
			due = l
		}
	}
	if due.IsZero() {
		t.sched.Cancel(st)
		if len(st.contacts) == 0 && !st.published {
			t.dropAoR(st)
		}
		return
	}
	t.sched.Schedule(st, due)
}

// SchedEntry is the AoR's place in the tracker's timer heap.
func (st *aorState) SchedEntry() *sched.Entry { return &st.timer }

// expireDue handles the AoRs whose deadline has passed by now; the clock
// does the same when the earliest is due.
func (t *Tracker) expireDue() {
	t.sched.RunDue(t.clock.Now())
}

// expireAoRs handles AoRs whose timers fired at now, maxBatch at a time
// under the lock.
func (t *Tracker) expireAoRs(now time.Time, due []*aorState) {
	for len(due) > 0 {
		n := min(len(due), maxBatch)
		t.expireBatch(now, due[:n])
		due = due[n:]
	}
}

func (t *Tracker) expireBatch(now time.Time, due []*aorState) {
	t.update(func(_ time.Time, ch *[]change) {
		for _, st := range due {
			if t.aors[st.aor] != st {
				continue // forgotten meanwhile
			}
			next := make([]Binding, 0, len(st.contacts))
			for _, b := range st.contacts {
				if b.Expires.After(now) {
					next = append(next, b)
				}
			}
			if len(next) != len(st.contacts) {
				t.log.Debug("usrloc: contacts expired", "aor", st.aor, "expired", len(st.contacts)-len(next))
				t.setContacts(st, next, now, "contact_expired", false, ch)
				continue
			}
			t.syncPublication(st, now)
			t.schedule(st)
		}
	})
}
