package heapfloor

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		floor, live uint64
		base, want  int
	}{
		{128 * mib, 32 * mib, 100, 300},  // goal 128 MiB
		{128 * mib, 16 * mib, 100, 700},  // smaller heap, larger percentage
		{128 * mib, 100 * mib, 100, 100}, // 2 × live is above the floor: GOGC as it is
		{128 * mib, 200 * mib, 100, 100}, // live above the floor
		{128 * mib, 32 * mib, 400, 400},  // GOGC above what the floor asks
		{128 * mib, 0, 100, 3200},        // nothing measured yet: the runtime's minimum at the floor
		{128 * mib, 1, 100, 3200},        // the same bound: 4 MiB × 32 = 128 MiB
		{128 * mib, 2 * mib, 100, 3200},  // (126/2 × 100 = 6300 would make the minimum 252 MiB)
		{2 * mib, 0, 100, 100},           // a floor under the runtime's minimum: GOGC as it is
		{1 << 40, 1 << 39, 100, 100},     // the largest floor, no overflow
		{1 << 40, 1 << 30, 100, 1023 * 100},
	} {
		if got := Percent(c.floor, c.live, c.base); got != c.want {
			t.Errorf("Percent(%d MiB, %d, %d) = %d, want %d", c.floor/mib, c.live, c.base, got, c.want)
		}
	}
}

func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// waitGOGC collects until the percentage satisfies ok: the keeper adjusts
// in a cleanup, which runs after a collection, on its own goroutine.
func waitGOGC(t *testing.T, ok func(uint64) bool, what string) {
	t.Helper()
	for range 200 {
		runtime.GC()
		if ok(gogc()) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("GOGC %d: want %s", gogc(), what)
}

// useGOGC sets the process's GOGC for the test and restores it after.
func useGOGC(t *testing.T, p int) {
	old := debug.SetGCPercent(p)
	t.Cleanup(func() { debug.SetGCPercent(old) })
}

func TestKeeperFollowsTheLiveHeap(t *testing.T) {
	useGOGC(t, 100)
	// A test binary's live heap is a few MiB: a 64 MiB floor asks for
	// several hundred per cent.
	k := Start(context.Background(), 64<<20)
	if k == nil {
		t.Fatal("Start returned no keeper")
	}
	defer k.Stop()
	waitGOGC(t, func(p uint64) bool { return p > 300 }, "raised above 300")
	// 48 MiB more live heap: twice the live heap is above the floor, and
	// after the next collection the percentage is GOGC's own again.
	live := make([]byte, 48<<20)
	waitGOGC(t, func(p uint64) bool { return p == 100 }, "100 with 48 MiB more live heap")
	runtime.KeepAlive(live)
	live = nil
	waitGOGC(t, func(p uint64) bool { return p > 300 }, "raised again once the heap is small")
}

func TestKeeperRestoresAtTheEnd(t *testing.T) {
	useGOGC(t, 150)
	ctx, cancel := context.WithCancel(context.Background())
	k := Start(ctx, 1<<30)
	if k == nil {
		t.Fatal("Start returned no keeper")
	}
	defer k.Stop()
	waitGOGC(t, func(p uint64) bool { return p > 1000 }, "raised above 1000")
	cancel()
	waitGOGC(t, func(p uint64) bool { return p == 150 }, "back to 150 when the context ends")
	// Collections after the end leave it alone (the cleanups run on
	// their own goroutine: watch for a while).
	for range 50 {
		runtime.GC()
		time.Sleep(2 * time.Millisecond)
		if p := gogc(); p != 150 {
			t.Fatalf("GOGC %d after the end, want 150", p)
		}
	}
}

func TestStopIsSynchronous(t *testing.T) {
	useGOGC(t, 100)
	k := Start(context.Background(), 1<<30)
	waitGOGC(t, func(p uint64) bool { return p > 1000 }, "raised above 1000")
	k.Stop()
	if p := gogc(); p != 100 {
		t.Fatalf("GOGC %d right after Stop, want 100", p)
	}
	k.Stop()
	(*Keeper)(nil).Stop()
}

func TestStartOff(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	useGOGC(t, 100)
	if Start(ctx, 0) != nil {
		t.Fatal("a zero floor started a keeper")
	}
	useGOGC(t, -1)
	if Start(ctx, 64<<20) != nil {
		t.Fatal("a keeper started with GOGC=off")
	}
	if p := debug.SetGCPercent(-1); p != -1 {
		t.Fatalf("GOGC changed to %d", p)
	}
}
