// Package heapfloor keeps the Go garbage collector's heap goal at or above
// a floor. Go's pacer sets the goal at the live heap plus GOGC per cent of
// it; with the small live heap of a small deployment and the steady
// allocation of the SIP path that is a collection every second or so, and
// each one takes processor time from the SIP path in the middle of its
// work (with two processors, a collection's mark workers and a store write
// can hold both). With a floor the goal is max(floor, live heap × (1 +
// GOGC/100)): a live heap above floor / (1 + GOGC/100) (half the floor
// with the default GOGC) is paced as before, a smaller one less often.
//
// Place in the flow: beside it all; cmd/puaside runs one Keeper for the
// process (the setting is the runtime's, so one per process).
package heapfloor

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// Percent is the GOGC value that puts the heap goal at floor bytes for a
// live heap of live bytes (none measured yet: 0), and at least base (the
// process's own GOGC). It is at most the value whose heap minimum (the
// runtime's 4 MiB × GOGC/100, below which it does not collect) is the
// floor, so that a nearly empty heap is not given a goal above the floor.
// floor is at most 1 TiB.
func Percent(floor, live uint64, base int) int {
	limit := floor * 100 / runtimeHeapMinimum
	if live >= floor {
		return base
	}
	p := limit
	if live > 0 {
		p = min(limit, (floor-live)*100/live)
	}
	return max(base, int(p))
}

// runtimeHeapMinimum is the Go runtime's heap minimum at GOGC=100; it
// scales with GOGC.
const runtimeHeapMinimum = 4 << 20

// Keeper sets the GC percentage after every collection, from the live heap
// that collection found.
type Keeper struct {
	floor uint64
	base  int
	// sample reads the live heap; one per Keeper, reused.
	sample []metrics.Sample

	mu      sync.Mutex // orders the adjustments with Stop
	stopped bool
}

// Start makes the heap goal at least floor bytes until ctx ends or Stop is
// called, when the process's own GOGC comes back. It does nothing (and
// returns nil) when floor is 0 or garbage collection is off (GOGC=off or
// 0).
func Start(ctx context.Context, floor uint64) *Keeper {
	if floor == 0 {
		return nil
	}
	gogc := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(gogc)
	base := int(int64(gogc[0].Value.Uint64()))
	if base <= 0 {
		// GOGC=off (it reads as -1) or 0: the process collects only
		// at its memory limit or all the time, and a floor has
		// nothing to raise.
		return nil
	}
	k := &Keeper{floor: floor, base: base,
		sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	k.mu.Lock()
	k.adjust()
	k.arm()
	k.mu.Unlock()
	context.AfterFunc(ctx, k.Stop)
	return k
}

// Stop gives the process its own GOGC back; once it returns no
// adjustment follows. A nil Keeper's Stop does nothing.
func (k *Keeper) Stop() {
	if k == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.stopped {
		k.stopped = true
		debug.SetGCPercent(k.base)
	}
}

// arm registers a cleanup on a fresh object: it runs after the collection
// that frees the object, adjusts, and arms the next one.
func (k *Keeper) arm() {
	// Larger than the tiny allocator's blocks, which share one object.
	runtime.AddCleanup(new([64]byte), func(k *Keeper) {
		k.mu.Lock()
		defer k.mu.Unlock()
		if !k.stopped {
			k.adjust()
			k.arm()
		}
	}, k)
}

// adjust sets the percentage for the live heap of the last collection.
// k.mu held.
func (k *Keeper) adjust() {
	metrics.Read(k.sample)
	live := k.sample[0].Value.Uint64()
	debug.SetGCPercent(Percent(k.floor, live, k.base))
}
