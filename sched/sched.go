// Package sched is the daemon's one timer heap. The engine (pua) schedules
// refreshes, retries and lifetimes on it, usrloc its contact expiries and
// lingers, dialoginfo its ring timeouts, lifetime caps and lingers. Each
// record embeds an Entry, so scheduling allocates nothing and a record is in
// the heap at most once; one clock.Timer is armed for the earliest entry.
package sched

import (
	"container/heap"
	"sync"
	"time"

	"github.com/puaside/puaside/clock"
)

// Entry is the scheduling state a record embeds. Its zero value is "not
// scheduled".
type Entry struct {
	due int64 // Unix nanoseconds; valid while idx > 0
	idx int32 // heap index + 1; 0 when not in the heap
}

// Scheduled reports whether the entry is in a heap.
func (e *Entry) Scheduled() bool { return e.idx > 0 }

// Item is a record that can be scheduled.
type Item interface {
	SchedEntry() *Entry
}

// items is the heap of scheduled records ordered by due time.
type items[T Item] []T

func (h items[T]) Len() int { return len(h) }
func (h items[T]) Less(i, j int) bool {
	return h[i].SchedEntry().due < h[j].SchedEntry().due
}
func (h items[T]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].SchedEntry().idx = int32(i + 1)
	h[j].SchedEntry().idx = int32(j + 1)
}
func (h *items[T]) Push(x any) {
	t := x.(T)
	t.SchedEntry().idx = int32(len(*h) + 1)
	*h = append(*h, t)
}
func (h *items[T]) Pop() any {
	old := *h
	n := len(old)
	t := old[n-1]
	var zero T
	old[n-1] = zero
	t.SchedEntry().idx = 0
	*h = old[:n-1]
	return t
}

// Scheduler is one timer heap driven by a single clock timer armed for its
// earliest entry. Due records leave the heap and are handed to fire, in due
// order, in the timer's goroutine and without the scheduler's lock held, so
// fire may schedule them again.
type Scheduler[T Item] struct {
	mu      sync.Mutex
	clock   clock.Clock
	h       items[T]
	timer   clock.Timer
	timerAt int64
	stopped bool
	fire    func(now time.Time, due []T)
}

// New returns a scheduler on c (nil is the wall clock) that hands due
// records to fire with the time they were found due at.
func New[T Item](c clock.Clock, fire func(now time.Time, due []T)) *Scheduler[T] {
	return &Scheduler[T]{clock: clock.OrReal(c), fire: fire}
}

// Schedule (re)arms t to fire at at. After Stop it does nothing.
func (s *Scheduler[T]) Schedule(t T, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	e := t.SchedEntry()
	e.due = at.UnixNano()
	if e.idx > 0 {
		heap.Fix(&s.h, int(e.idx-1))
	} else {
		heap.Push(&s.h, t)
	}
	s.rearmLocked()
}

// Cancel removes t from the heap; it reports whether it was scheduled.
func (s *Scheduler[T]) Cancel(t T) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := t.SchedEntry()
	if e.idx == 0 {
		return false
	}
	heap.Remove(&s.h, int(e.idx-1))
	s.rearmLocked()
	return true
}

// Due returns when t fires, and false when it is not scheduled.
func (s *Scheduler[T]) Due(t T) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := t.SchedEntry()
	if e.idx == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, e.due), true
}

// Len is the number of scheduled records.
func (s *Scheduler[T]) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.h)
}

// RunDue hands every record due at now to fire in the caller's goroutine
// (the timer does the same on its own); it reports how many there were.
func (s *Scheduler[T]) RunDue(now time.Time) int {
	due := s.popDue(now.UnixNano())
	if len(due) > 0 {
		s.fire(now, due)
	}
	return len(due)
}

// rearmLocked makes sure the clock timer fires no later than the earliest
// entry (and stops it when the heap is empty).
func (s *Scheduler[T]) rearmLocked() {
	if len(s.h) == 0 || s.stopped {
		if s.timer != nil {
			s.timer.Stop()
			s.timer = nil
		}
		return
	}
	at := s.h[0].SchedEntry().due
	if s.timer != nil && s.timerAt <= at {
		// Armed no later than needed: when it fires it finds what is due
		// and re-arms, so moving the earliest entry later costs no timer.
		return
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	s.timerAt = at
	s.timer = s.clock.At(time.Unix(0, at), s.run)
}

// popDue takes the records due at now off the heap and re-arms the timer.
func (s *Scheduler[T]) popDue(now int64) []T {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	var due []T
	for len(s.h) > 0 && s.h[0].SchedEntry().due <= now {
		due = append(due, heap.Pop(&s.h).(T))
	}
	s.rearmLocked()
	return due
}

// run is the timer's callback.
func (s *Scheduler[T]) run() {
	s.mu.Lock()
	s.timer = nil
	s.mu.Unlock()
	s.RunDue(s.clock.Now())
}

// Stop cancels the timer; later Schedule calls do nothing.
func (s *Scheduler[T]) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
}
