package pua

import (
	"sync"
	"time"

	"github.com/puaside/puaside/sched"
)

// task is the scheduling state embedded in every record: its place in the
// timer heap and in the ready queue.
type task struct {
	sched.Entry
	// jflag is the flag of the row last appended to the journal for this
	// record (jflagSet), whose deletion a removal or a flag change must
	// append too, stored in the database or not. Shard locked.
	jflag    int
	jflagSet bool
	queued   bool // waiting in the ready queue
	jdirty   bool // changed since the last append to the journal (journal.go); shard locked
}

// staleFlags returns the flags of the rows of a record's identity other
// than the one of flag that may be stored (storedFlag, -1 none) or be in
// the journal: their deletion goes with the record's change. Shard locked.
func (t *task) staleFlags(storedFlag, flag int) []int {
	var out []int
	if storedFlag >= 0 && storedFlag != flag {
		out = append(out, storedFlag)
	}
	if t.jflagSet && t.jflag != flag && t.jflag != storedFlag {
		out = append(out, t.jflag)
	}
	return out
}

// SchedEntry is the record's place in the timer heap.
func (t *task) SchedEntry() *sched.Entry { return &t.Entry }

// tasker is a record that can be scheduled (publication or subscription).
type tasker interface {
	base() *task
	SchedEntry() *sched.Entry
}

// newScheduler returns the engine's timer heap: due records go to fire (the
// ready queue).
func newScheduler(c Clock, fire func(tasker)) *sched.Scheduler[tasker] {
	return sched.New(c, func(_ time.Time, due []tasker) {
		for _, t := range due {
			fire(t)
		}
	})
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
