package pua

import (
	"fmt"
	"testing"
	"time"
)

// TestRefreshTimesKeepSubSecondSpread: publications granted within one
// second are refreshed at their own times, not all at the same whole
// second, and each refresh leaves when its time comes.
func TestRefreshTimesKeepSubSecondSpread(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	e := newTestEngine(t, fs, clk, nil, nil)
	const n = 10
	keys := make([]Key, n)
	for i := range keys {
		keys[i] = Key{PresURI: fmt.Sprintf("sip:user%d@example.com", i), Event: "presence", ID: "usrloc"}
		mustWait(t, e, PublishRequest{Key: keys[i], Body: pidf("x"), Flag: FlagUsrloc})
		clk.Advance(90 * time.Millisecond) // all ten within one second
	}
	seen := map[time.Time]bool{}
	var first time.Time
	for _, k := range keys {
		info, ok := e.Publication(k)
		if !ok {
			t.Fatalf("%s not published", k.PresURI)
		}
		seen[info.NextRefresh] = true
		if info.NextRefresh.Nanosecond() == 0 {
			t.Errorf("%s refreshes at %v, a whole second: the refreshes of one second would leave together",
				k.PresURI, info.NextRefresh)
		}
		if first.IsZero() || info.NextRefresh.Before(first) {
			first = info.NextRefresh
		}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct refresh times for %d publications granted at distinct instants, want %d", len(seen), n, n)
	}
	sent := len(fs.Requests())
	clk.Set(first.Add(-time.Millisecond))
	if got := len(fs.Requests()); got != sent {
		t.Fatalf("%d refreshes sent before the earliest refresh time", got-sent)
	}
	clk.Set(first)
	waitFor(t, "the earliest refresh", countIs(fs, sent+1))
}
