package clock

import (
	"math"
	"time"
)

// Stamp is an instant in 8 bytes instead of a time.Time's 24, for state
// held per AoR or per message key: the time since an Epoch, shifted so
// that the zero Stamp is no instant. Turned back into a time by its Epoch
// it carries the epoch's monotonic reading, so comparing it with the
// clock's other times gives what comparing the original would.
type Stamp int64

// Epoch is the origin of Stamps. The zero Epoch takes the first time it
// is given (Stamp); an Epoch is not safe for concurrent use.
type Epoch struct{ t0 time.Time }

// Stamp returns the stamp of tm, a time of the clock the epoch's first
// time came from.
func (e *Epoch) Stamp(tm time.Time) Stamp {
	if e.t0.IsZero() {
		e.t0 = tm
	}
	d := tm.Sub(e.t0)
	if d >= 0 && d < math.MaxInt64 { // (Sub saturates at ±292 years)
		d++ // 0 is no instant
	}
	return Stamp(d)
}

// Time returns the instant s stands for, the zero time for the zero
// stamp.
func (e *Epoch) Time(s Stamp) time.Time {
	switch {
	case s == 0:
		return time.Time{}
	case s > 0:
		s--
	}
	return e.t0.Add(time.Duration(s))
}
