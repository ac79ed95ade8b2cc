package pua

import (
	"container/heap"
	"sync"
	"time"
)

// task is the scheduling state embedded in every record: its place in the
// timer heap and in the ready queue.
type task struct {
	due    int64 // Unix nanoseconds the timer fires; valid while hidx >= 0
	hidx   int32 // index in the timer heap, -1 when not scheduled
	queued bool  // waiting in the ready queue
}

// tasker is a record that can be scheduled (publication or subscription).
type tasker interface {
	base() *task
}

// timerHeap orders tasks by due time.
type timerHeap []tasker

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].base().due < h[j].base().due }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].base().hidx = int32(i)
	h[j].base().hidx = int32(j)
}
func (h *timerHeap) Push(x any) {
	t := x.(tasker)
	t.base().hidx = int32(len(*h))
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	n := len(old)
	t := old[n-1]
	old[n-1] = nil
	t.base().hidx = -1
	*h = old[:n-1]
	return t
}

// scheduler is one timer heap driven by a single Clock timer armed for the
// earliest entry. Due tasks are handed to fire (the ready queue).
type scheduler struct {
	mu      sync.Mutex
	clock   Clock
	h       timerHeap
	timer   Timer
	timerAt int64
	stopped bool
	fire    func(tasker)
}

func newScheduler(c Clock, fire func(tasker)) *scheduler {
	return &scheduler{clock: c, fire: fire}
}

// schedule (re)arms t to fire at at.
func (s *scheduler) schedule(t tasker, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	b := t.base()
	b.due = at.UnixNano()
	if b.hidx >= 0 {
		heap.Fix(&s.h, int(b.hidx))
	} else {
		heap.Push(&s.h, t)
	}
	s.rearmLocked()
}

// cancel removes t from the heap.
func (s *scheduler) cancel(t tasker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := t.base()
	if b.hidx >= 0 {
		heap.Remove(&s.h, int(b.hidx))
	}
}

// rearmLocked points the clock timer at the earliest entry.
func (s *scheduler) rearmLocked() {
	if len(s.h) == 0 {
		if s.timer != nil {
			s.timer.Stop()
			s.timer = nil
		}
		return
	}
	at := s.h[0].base().due
	if s.timer != nil && s.timerAt == at {
		return
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	s.timerAt = at
	d := time.Duration(at - s.clock.Now().UnixNano())
	s.timer = s.clock.AfterFunc(max(d, 0), s.run)
}

// run fires every due task.
func (s *scheduler) run() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	now := s.clock.Now().UnixNano()
	var due []tasker
	for len(s.h) > 0 && s.h[0].base().due <= now {
		due = append(due, heap.Pop(&s.h).(tasker))
	}
	s.timer = nil
	s.rearmLocked()
	s.mu.Unlock()
	for _, t := range due {
		s.fire(t)
	}
}

// stop cancels the timer; later schedule calls are ignored.
func (s *scheduler) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
}

// readyQueue is the FIFO of records with work to do. A record is in it at
// most once, so its length is bounded by the number of records.
type readyQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	items  []tasker
	head   int
	closed bool
	depth  func(int)
}

func newReadyQueue(depth func(int)) *readyQueue {
	q := &readyQueue{depth: depth}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// push adds t unless it is already queued.
func (q *readyQueue) push(t tasker) {
	q.mu.Lock()
	b := t.base()
	if b.queued || q.closed {
		q.mu.Unlock()
		return
	}
	b.queued = true
	q.items = append(q.items, t)
	n := len(q.items) - q.head
	q.mu.Unlock()
	q.cond.Signal()
	q.depth(n)
}

// pop blocks for the next task; ok is false once the queue is closed.
func (q *readyQueue) pop() (tasker, bool) {
	q.mu.Lock()
	for q.head == len(q.items) && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		q.mu.Unlock()
		return nil, false
	}
	t := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head > 1024 && q.head*2 > len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	t.base().queued = false
	n := len(q.items) - q.head
	q.mu.Unlock()
	q.depth(n)
	return t, true
}

// close wakes every worker; pending tasks are dropped (the store keeps them).
func (q *readyQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}
