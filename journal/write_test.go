package journal

import (
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestSlowWriteSendsTheNextOnesThroughTheScheduler: a write slower than
// rawSlow makes the writes of the next rawBackoff plain ones, and they
// land as the raw ones did; a write over rawMax is plain in any case.
func TestSlowWriteSendsTheNextOnesThroughTheScheduler(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, _, _ := open(t, path)
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
