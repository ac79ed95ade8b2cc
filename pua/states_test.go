package pua

import (
	"testing"
	"time"

	"github.com/puaside/puaside/clock/clocktest"
)

// TestPublicationStatesCountRecords: the counts by event and state are
// those of the snapshots, as records move from pending to active.
func TestPublicationStatesCountRecords(t *testing.T) {
	peer := newUDPPeer(t)
	clk := clocktest.New(time.Unix(1_700_000_000, 0))
	e, _ := nictEngine(t, clk, func(c *Config) { c.ServerAddress = peer.uri() })
	publishN(t, e, 3)
	first, second, third := peer.next(), peer.next(), peer.next()
	accept(peer, first, "etag-1")
	accept(peer, second, "etag-2")
	counted := func() map[[2]string]int {
		m := map[[2]string]int{}
		for _, n := range e.PublicationStates() {
			m[[2]string{n.Event, n.State}] += n.N
		}
		return m
	}
	waitFor(t, "two active", func() bool { return counted()[[2]string{"presence", StateActive}] == 2 })
	snap := map[[2]string]int{}
	for _, p := range e.Publications() {
		snap[[2]string{p.Key.Event, p.State}]++
	}
	got := counted()
	if len(got) != len(snap) || got[[2]string{"presence", StatePending}] != 1 {
		t.Fatalf("counts %v, snapshots %v", got, snap)
	}
	for k, n := range snap {
		if got[k] != n {
			t.Fatalf("counts %v, snapshots %v", got, snap)
		}
	}
	if n := len(e.SubscriptionStates()); n != 0 {
		t.Fatalf("%d subscription states with no subscription", n)
	}
	accept(peer, third, "etag-3")
	waitFor(t, "three active", func() bool { return counted()[[2]string{"presence", StateActive}] == 3 })
}
