package sched

import (
	"sync"
	"testing"
	"time"

	"github.com/puaside/puaside/clock/clocktest"
)

type rec struct {
	Entry
	name string
}

func (r *rec) SchedEntry() *Entry { return &r.Entry }

type recorder struct {
	mu    sync.Mutex
	fired []string
}

func (r *recorder) fire(_ time.Time, due []*rec) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range due {
		r.fired = append(r.fired, x.name)
	}
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.fired
	r.fired = nil
	return out
}

func TestFiresInDueOrderAtSubSecondTimes(t *testing.T) {
	c := clocktest.New(time.Unix(1_700_000_000, 0))
	var r recorder
	s := New(c, r.fire)
	a, b, d := &rec{name: "a"}, &rec{name: "b"}, &rec{name: "d"}
	now := c.Now()
	s.Schedule(b, now.Add(1500*time.Millisecond))
	s.Schedule(a, now.Add(1200*time.Millisecond))
	s.Schedule(d, now.Add(3*time.Second))
	c.Advance(1100 * time.Millisecond)
	if got := r.take(); len(got) != 0 {
		t.Fatalf("fired early: %v", got)
	}
	c.Advance(200 * time.Millisecond)
	if got := r.take(); len(got) != 1 || got[0] != "a" {
		t.Fatalf("at 1.3 s fired %v, want [a]", got)
	}
	c.Advance(300 * time.Millisecond)
	if got := r.take(); len(got) != 1 || got[0] != "b" {
		t.Fatalf("at 1.6 s fired %v, want [b]", got)
	}
	if s.Len() != 1 || c.Pending() != 1 {
		t.Fatalf("len %d, timers %d; want 1 and 1", s.Len(), c.Pending())
	}
}

func TestRescheduleAndCancel(t *testing.T) {
	c := clocktest.New(time.Unix(1_700_000_000, 0))
	var r recorder
	s := New(c, r.fire)
	a, b := &rec{name: "a"}, &rec{name: "b"}
	now := c.Now()
	s.Schedule(a, now.Add(time.Second))
	s.Schedule(b, now.Add(2*time.Second))
	s.Schedule(a, now.Add(5*time.Second)) // later: b first now
	if !s.Cancel(b) || s.Cancel(b) {
		t.Fatal("Cancel: want true then false")
	}
	if at, ok := s.Due(a); !ok || !at.Equal(now.Add(5*time.Second)) {
		t.Fatalf("Due(a) = %v %v", at, ok)
	}
	c.Advance(4 * time.Second)
	if got := r.take(); len(got) != 0 {
		t.Fatalf("fired %v before a's new time", got)
	}
	c.Advance(time.Second)
	if got := r.take(); len(got) != 1 || got[0] != "a" {
		t.Fatalf("fired %v, want [a]", got)
	}
	if a.Scheduled() || s.Len() != 0 || c.Pending() != 0 {
		t.Fatalf("after firing: scheduled %v, len %d, timers %d", a.Scheduled(), s.Len(), c.Pending())
	}
}

func TestRunDueAndStop(t *testing.T) {
	c := clocktest.New(time.Unix(1_700_000_000, 0))
	var r recorder
	s := New(c, r.fire)
	a := &rec{name: "a"}
	s.Schedule(a, c.Now().Add(time.Minute))
	if n := s.RunDue(c.Now().Add(time.Minute)); n != 1 {
		t.Fatalf("RunDue = %d, want 1", n)
	}
	if c.Pending() != 0 {
		t.Fatalf("timer left armed for an empty heap: %d", c.Pending())
	}
	s.Stop()
	s.Schedule(a, c.Now().Add(time.Second))
	c.Advance(time.Hour)
	if got := r.take(); len(got) != 1 {
		t.Fatalf("fired after Stop: %v", got)
	}
}

func BenchmarkScheduleFire(b *testing.B) {
	c := clocktest.New(time.Unix(1_700_000_000, 0))
	s := New(c, func(time.Time, []*rec) {})
	rs := make([]*rec, 1024)
	for i := range rs {
		rs[i] = &rec{}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.Schedule(rs[i%len(rs)], c.Now().Add(time.Duration(i%977)*time.Millisecond))
		if i%len(rs) == 0 {
			c.Advance(500 * time.Millisecond)
		}
	}
}

// TestMovingEarliestLaterKeepsTheTimer: a record moved later fires at its
// new time, and the timer armed for its old time is reused, not replaced.
func TestMovingEarliestLaterKeepsTheTimer(t *testing.T) {
	c := clocktest.New(time.Unix(1_700_000_000, 0))
	var r recorder
	s := New(c, r.fire)
	a := &rec{name: "a"}
	now := c.Now()
	s.Schedule(a, now.Add(time.Second))
	for i := 2; i <= 10; i++ {
		s.Schedule(a, now.Add(time.Duration(i)*time.Second))
	}
	if c.Pending() != 1 {
		t.Fatalf("%d timers armed, want 1", c.Pending())
	}
	c.Advance(time.Second) // the old timer fires, nothing is due, it re-arms
	if got := r.take(); len(got) != 0 || c.Pending() != 1 {
		t.Fatalf("at 1 s fired %v with %d timers, want nothing and 1", got, c.Pending())
	}
	c.Advance(9 * time.Second)
	if got := r.take(); len(got) != 1 {
		t.Fatalf("at 10 s fired %v, want [a]", got)
	}
}

// movingClock is a fake clock that moves on by step right after the first
// Now returns, as when a test advances its clock while the engine is
// arming a refresh on another goroutine.
type movingClock struct {
	*clocktest.Fake
	step time.Duration
	once sync.Once
}

func (c *movingClock) Now() time.Time {
	now := c.Fake.Now()
	c.once.Do(func() { c.Fake.Advance(c.step) })
	return now
}

// TestTimerArmedForItsInstant checks that the heap's timer fires at the
// entry's due time even when the clock moves while it is armed: a timer
// armed for a duration from an earlier reading would fire step late.
func TestTimerArmedForItsInstant(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	c := &movingClock{Fake: clocktest.New(start), step: 90 * time.Millisecond}
	var r recorder
	s := New(c, r.fire)
	s.Schedule(&rec{name: "a"}, start.Add(time.Second))
	c.Set(start.Add(time.Second))
	if got := r.take(); len(got) != 1 || got[0] != "a" {
		t.Fatalf("at its due time fired %v, want [a]", got)
	}
}
