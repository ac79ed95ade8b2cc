// Package clocktest is the fake clock.Clock for tests: time stands still
// until the test advances it, and timers fire as it passes them.
package clocktest

import (
	"sort"
	"sync"
	"time"

	"github.com/puaside/puaside/clock"
)

// Fake is a clock.Clock that moves only when Advance or Set is called.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	timers []*timer
}

type timer struct {
	c       *Fake
	at      time.Time
	f       func()
	stopped bool
}

// New returns a fake clock standing at start.
func New(start time.Time) *Fake { return &Fake{now: start} }

// Now returns the fake time.
func (c *Fake) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc arms f to run when the clock reaches now+d. With d <= 0 it
// runs at once in its own goroutine, like time.AfterFunc.
func (c *Fake) AfterFunc(d time.Duration, f func()) clock.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.armLocked(c.now.Add(d), f)
}

// At arms f to run when the clock reaches at; at or before now it runs at
// once in its own goroutine.
func (c *Fake) At(at time.Time, f func()) clock.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.armLocked(at, f)
}

func (c *Fake) armLocked(at time.Time, f func()) *timer {
	t := &timer{c: c, at: at, f: f}
	if !at.After(c.now) {
		go f()
		return t
	}
	c.timers = append(c.timers, t)
	return t
}

// Stop cancels the timer; it reports whether it was still pending.
func (t *timer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	for i, x := range t.c.timers {
		if x == t {
			t.c.timers = append(t.c.timers[:i], t.c.timers[i+1:]...)
			return was
		}
	}
	return false
}

// Pending is the number of armed timers.
func (c *Fake) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// Advance moves time forward by d and runs, in due order and in the
// caller's goroutine, the timers that became due. It returns the new time.
func (c *Fake) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	return c.setLocked(c.now.Add(d))
}

// Set moves the clock to at (never backwards) and runs the due timers.
func (c *Fake) Set(at time.Time) time.Time {
	c.mu.Lock()
	if at.Before(c.now) {
		at = c.now
	}
	return c.setLocked(at)
}

func (c *Fake) setLocked(at time.Time) time.Time {
	c.now = at
	var due, keep []*timer
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			due = append(due, t)
		} else {
			keep = append(keep, t)
		}
	}
	c.timers = keep
	c.mu.Unlock()
	sort.SliceStable(due, func(i, j int) bool { return due[i].at.Before(due[j].at) })
	for _, t := range due {
		t.f()
	}
	return at
}
