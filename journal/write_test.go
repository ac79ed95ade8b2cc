package journal

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// sleptWrite is writeRaw saying that every write slept in the kernel.
func sleptWrite(f *os.File, b []byte) (int, bool, bool, error) {
	n, ok, _, err := writeRaw(f, b)
	return n, ok, true, err
}

// TestSlowWriteSendsTheNextOnesThroughTheScheduler: a write slower than
// rawSlow that slept in the kernel makes the writes of the next
// rawBackoff plain ones, and they land as the raw ones did; a write over
// rawMax is plain in any case.
func TestSlowWriteSendsTheNextOnesThroughTheScheduler(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, _, _ := open(t, path)
	j.rawWrite = sleptWrite
	if err := j.Append(payloads("one")); err != nil {
		t.Fatal(err)
	}
	if !j.rawAfter.IsZero() {
		t.Fatalf("a fast write set rawAfter %v", j.rawAfter)
	}
	j.rawSlow = -1 // every write is slow
	if err := j.Append([][]byte{make([]byte, rawMax)}); err != nil {
		t.Fatal(err)
	}
	if !j.rawAfter.IsZero() {
		t.Fatalf("a write over rawMax, plain, set rawAfter %v", j.rawAfter)
	}
	before := time.Now()
	if err := j.Append(payloads("two")); err != nil {
		t.Fatal(err)
	}
	if !j.rawAfter.After(before.Add(rawBackoff - time.Second)) {
		t.Fatalf("rawAfter %v after a slow write at %v", j.rawAfter, before)
	}
	after := j.rawAfter
	if err := j.Append(payloads("three")); err != nil {
		t.Fatal(err)
	}
	if j.rawAfter != after {
		t.Fatalf("a plain write moved rawAfter from %v to %v", after, j.rawAfter)
	}
	j.Close()
	_, ps, st := open(t, path)
	if got := strs(ps); len(got) != 4 || !slices.Equal([]string{got[0], got[2], got[3]}, []string{"one", "two", "three"}) || len(got[1]) != rawMax || st.Corrupt != 0 {
		t.Fatalf("payloads %q, stats %+v", got, st)
	}
}

// TestSlowWriteThatDidNotSleepStaysRaw: a write that took longer than
// rawSlow without sleeping in the kernel (its thread was preempted) does
// not send the next writes through the scheduler.
func TestSlowWriteThatDidNotSleepStaysRaw(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, _, _ := open(t, path)
	raws := 0
	j.rawWrite = func(f *os.File, b []byte) (int, bool, bool, error) {
		raws++
		n, ok, _, err := writeRaw(f, b)
		return n, ok, false, err
	}
	j.rawSlow = -1 // every write is slow
	for _, p := range []string{"one", "two"} {
		if err := j.Append(payloads(p)); err != nil {
			t.Fatal(err)
		}
	}
	if !j.rawAfter.IsZero() || raws < 2 {
		t.Fatalf("rawAfter %v and %d raw writes after two slow writes that did not sleep", j.rawAfter, raws)
	}
	j.Close()
	if _, ps, _ := open(t, path); !slices.Equal(strs(ps), []string{"one", "two"}) {
		t.Fatalf("payloads %q", strs(ps))
	}
}
