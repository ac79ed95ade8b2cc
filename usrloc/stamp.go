package usrloc

import (
	"math"
	"time"
)

// stamp is an instant of the tracker's clock in 8 bytes instead of a
// time.Time's 24, for the state held per AoR: the time since the tracker's
// epoch (its clock's time at New), shifted so that the zero stamp is no
// instant. A time of the clock converts back with its monotonic reading,
// so comparing it with the clock's other times gives what comparing the
// original would.
type stamp int64

// stampOf returns the stamp of tm, a time of the tracker's clock.
func (t *Tracker) stampOf(tm time.Time) stamp {
	d := tm.Sub(t.epoch)
	if d >= 0 && d < math.MaxInt64 { // (Sub saturates at ±292 years)
		d++ // 0 is no instant
	}
	return stamp(d)
}

// timeOf returns the instant s stands for, the zero time for the zero
// stamp.
func (t *Tracker) timeOf(s stamp) time.Time {
	switch {
	case s == 0:
		return time.Time{}
	case s > 0:
		s--
	}
	return t.epoch.Add(time.Duration(s))
}
