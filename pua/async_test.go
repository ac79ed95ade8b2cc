package pua

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/clock/clocktest"
)

// asyncKey is the key of the i-th test presentity.
func asyncKey(i int) Key {
	return Key{PresURI: fmt.Sprintf("sip:user%d@example.com", i), Event: "presence"}
}

// publishN publishes n presentities to the engine.
func publishN(t *testing.T, e *Engine, n int) {
	t.Helper()
	for i := range n {
		if err := e.Publish(PublishRequest{Key: asyncKey(i), Body: []byte("<presence/>")}); err != nil {
			t.Fatal(err)
		}
	}
}

// accept answers a PUBLISH 200 with an ETag and its Expires.
func accept(p *udpPeer, r peerReq, etag string) {
	p.reply(r, 200, func(res *sip.Response) {
		res.AppendHeader(sip.NewHeader("SIP-ETag", etag))
		res.AppendHeader(sip.NewHeader("Expires", "3600"))
	})
}

// TestPublishSlotsCapInFlight: a PUBLISH does not hold a worker while it
// waits for its reply, but it holds one of max_outstanding slots, so no
// more than that many are in flight; an answer frees the slot for the
// next record, and each answer is applied to its own record.
func TestPublishSlotsCapInFlight(t *testing.T) {
	peer := newUDPPeer(t)
	clk := clocktest.New(time.Unix(1_700_000_000, 0))
	e, _ := nictEngine(t, clk, func(c *Config) {
		c.MaxOutstanding = 2
		c.ServerAddress = peer.uri()
	})
	publishN(t, e, 4)
	first := []peerReq{peer.next(), peer.next()}
	select {
	case r := <-peer.reqs:
		t.Fatalf("a third PUBLISH in flight with max_outstanding 2:\n%s", r.raw)
	case <-time.After(300 * time.Millisecond):
	}
	accept(peer, first[0], "etag-a")
	third := peer.next()
	accept(peer, first[1], "etag-b")
	fourth := peer.next()
	accept(peer, third, "etag-c")
	accept(peer, fourth, "etag-d")
	want := map[string]string{}
	for i, r := range []peerReq{first[0], first[1], third, fourth} {
		want[r.req.Recipient.User] = []string{"etag-a", "etag-b", "etag-c", "etag-d"}[i]
	}
	if len(want) != 4 {
		t.Fatalf("PUBLISHes for %d presentities, want 4", len(want))
	}
	waitFor(t, "four publications active", func() bool {
		for i := range 4 {
			p, ok := e.Publication(asyncKey(i))
			if !ok || p.State != StateActive || p.ETag != want[fmt.Sprintf("user%d", i)] {
				return false
			}
		}
		return true
	})
}

// TestStopWaitsForPublishesInFlight: Stop waits, within its context, for
// the PUBLISHes in flight and applies their replies before it ends.
func TestStopWaitsForPublishesInFlight(t *testing.T) {
	peer := newUDPPeer(t)
	clk := clocktest.New(time.Unix(1_700_000_000, 0))
	e, _ := nictEngine(t, clk, func(c *Config) { c.ServerAddress = peer.uri() })
	publishN(t, e, 1)
	r := peer.next()
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- e.Stop(ctx)
	}()
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) with a PUBLISH in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	accept(peer, r, "etag-stop")
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return after the reply")
	}
	if p, _ := e.Publication(asyncKey(0)); p.ETag != "etag-stop" || p.State != StateActive {
		t.Fatalf("after Stop: %+v, want the reply applied", p)
	}
}

// TestStopEndsPublishesInFlightAtItsDeadline: when Stop's context ends
// first, the PUBLISHes still in flight end as cancelled (not timed out)
// and Stop returns.
func TestStopEndsPublishesInFlightAtItsDeadline(t *testing.T) {
	peer := newUDPPeer(t)
	clk := clocktest.New(time.Unix(1_700_000_000, 0))
	e, _ := nictEngine(t, clk, func(c *Config) { c.ServerAddress = peer.uri() })
	publishN(t, e, 2)
	peer.next()
	peer.next()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() { e.Stop(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not end the PUBLISHes in flight")
	}
	for i := range 2 {
		p, _ := e.Publication(asyncKey(i))
		if p.State == StateActive || p.ETag != "" {
			t.Fatalf("publication %d after Stop: %+v", i, p)
		}
	}
	checkIdle(t, e)
}
