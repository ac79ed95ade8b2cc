// Package clock is the daemon's one source of time. The engine (pua), the
// trackers (usrloc, dialoginfo, bla) and the scheduler read the time and arm
// timers through Clock, so tests drive refreshes, expiries and timeouts with
// the fake in clocktest instead of sleeping. Network deadlines (sockets,
// request timeouts) use real time and stay outside it. Stamp keeps one of
// its instants in 8 bytes where a tracker holds one per AoR or per key.
package clock

import "time"

// Clock gives the current time and one-shot timers.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine (or synchronously, for a fake
	// clock being advanced) once d has elapsed.
	AfterFunc(d time.Duration, f func()) Timer
	// At calls f as AfterFunc does once the clock reaches t. A timer for
	// an instant is never late by what the clock moved between an earlier
	// Now and arming it (a fake clock advanced by another goroutine).
	At(t time.Time, f func()) Timer
}

// Timer is a pending AfterFunc or At call.
type Timer interface {
	// Stop prevents the call; it reports whether the call was still pending.
	Stop() bool
}

// Real is the wall clock.
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// AfterFunc is time.AfterFunc.
func (Real) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// At is time.AfterFunc until t.
func (Real) At(t time.Time, f func()) Timer { return time.AfterFunc(time.Until(t), f) }

// OrReal returns c, or the wall clock when c is nil.
func OrReal(c Clock) Clock {
	if c == nil {
		return Real{}
	}
	return c
}
