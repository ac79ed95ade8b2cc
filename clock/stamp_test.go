package clock

import (
	"testing"
	"time"
)

// TestStampRoundTrip: a stamp gives back its instant, before or after the
// epoch, compared as the original compares with the clock's other times;
// no instant has the zero stamp.
func TestStampRoundTrip(t *testing.T) {
	var e Epoch
	t0 := time.Now()
	if s := e.Stamp(t0); s == 0 || !e.Time(s).Equal(t0) {
		t.Fatalf("the epoch's own time: stamp %d, time %v", s, e.Time(s))
	}
	for _, d := range []time.Duration{-time.Hour, -1, 0, 1, time.Nanosecond * 7, 90 * time.Minute} {
		tm := t0.Add(d)
		s := e.Stamp(tm)
		if s == 0 {
			t.Fatalf("%v: zero stamp", d)
		}
		back := e.Time(s)
		if !back.Equal(tm) || back.Sub(t0) != d || back.After(t0) != tm.After(t0) {
			t.Fatalf("%v: back %v, want %v", d, back, tm)
		}
	}
	if !e.Time(0).IsZero() {
		t.Fatal("the zero stamp is an instant")
	}
}
