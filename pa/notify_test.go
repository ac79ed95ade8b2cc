package pa

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/clock"
	"github.com/puaside/puaside/clock/clocktest"
	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/internal/siplisten"
	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/pua"
)

func fastRetry() Config {
	c := DefaultConfig()
	c.RetryMin, c.RetryMax, c.RequestTimeout, c.MaxRetries = 20*time.Millisecond, 40*time.Millisecond, 300*time.Millisecond, 3
	return c
}

func publishOpen(t *testing.T, s *Server, pres, id, tuple string) {
	t.Helper()
	if err := s.Publish(pua.PublishRequest{Key: pua.Key{PresURI: pres, Event: "presence", ID: id},
		Body: presenceBody(pres, tuple, "open")}); err != nil {
		t.Fatal(err)
	}
}

// A NOTIFY answered 500 is retried (OpenSIPS#380 dropped the subscription).
func TestNotifyRetriedAfter5xx(t *testing.T) {
	s, addr := startServer(t, fastRetry(), Options{})
	p := newPeer(t, func(n int, _ *sip.Request) int {
		if n == 2 {
			return 503
		}
		return 200
	})
	if res := p.subscribe(addr, "sip:alice@example.com", "presence", 600); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
	}
	p.waitN(1, 5*time.Second)
	publishOpen(t, s, "sip:alice@example.com", "u", "t1")
	got := p.waitN(3, 5*time.Second)
	if !strings.Contains(string(got[2].Body()), `id="t1"`) {
		t.Fatalf("retried NOTIFY lacks the state: %s", got[2].Body())
	}
	if got[2].CSeq().SeqNo <= got[1].CSeq().SeqNo {
		t.Fatalf("retry CSeq %d not above %d", got[2].CSeq().SeqNo, got[1].CSeq().SeqNo)
	}
	if len(s.Watchers()) != 1 {
		t.Fatalf("subscription dropped after one 503")
	}
}

// A NOTIFY answered 481 ends the subscription.
func TestNotify481Ends(t *testing.T) {
	s, addr := startServer(t, fastRetry(), Options{})
	p := newPeer(t, func(n int, _ *sip.Request) int {
		if n == 2 {
			return 481
		}
		return 200
	})
	p.subscribe(addr, "sip:alice@example.com", "presence", 600)
	p.waitN(1, 5*time.Second)
	publishOpen(t, s, "sip:alice@example.com", "u", "t1")
	p.waitN(2, 5*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for len(s.Watchers()) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("subscription kept after 481")
		}
		time.Sleep(5 * time.Millisecond)
	}
	publishOpen(t, s, "sip:alice@example.com", "u", "t2")
	time.Sleep(50 * time.Millisecond)
	if n := p.count(); n != 2 {
		t.Fatalf("%d NOTIFYs after 481, want none more", n-2)
	}
}

// Timeouts in a row up to max_retries end the subscription.
func TestNotifyRepeatedTimeoutsEnd(t *testing.T) {
	s, addr := startServer(t, fastRetry(), Options{})
	p := newPeer(t, func(n int, _ *sip.Request) int {
		if n == 1 {
			return 200
		}
		return 0
	})
	p.subscribe(addr, "sip:alice@example.com", "presence", 600)
	p.waitN(1, 5*time.Second)
	publishOpen(t, s, "sip:alice@example.com", "u", "t1")
	deadline := time.Now().Add(10 * time.Second)
	for len(s.Watchers()) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("subscription kept after repeated timeouts")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// One NOTIFY in flight per dialog; the changes made meanwhile are
// coalesced, the last one is told last, CSeqs increase.
func TestCoalescing(t *testing.T) {
	s, addr := startServer(t, DefaultConfig(), Options{})
	var mu sync.Mutex
	inFlight, maxInFlight := 0, 0
	release := make(chan struct{})
	p := newPeer(t, func(n int, _ *sip.Request) int {
		mu.Lock()
		inFlight++
		maxInFlight = max(maxInFlight, inFlight)
		mu.Unlock()
		if n == 2 {
			<-release
		}
		mu.Lock()
		inFlight--
		mu.Unlock()
		return 200
	})
	p.subscribe(addr, "sip:alice@example.com", "presence", 600)
	p.waitN(1, 5*time.Second)
	publishOpen(t, s, "sip:alice@example.com", "u", "t0")
	p.waitN(2, 5*time.Second)
	for i := 1; i <= 20; i++ {
		publishOpen(t, s, "sip:alice@example.com", "u", "t"+strconv.Itoa(i))
	}
	time.Sleep(50 * time.Millisecond)
	if n := p.count(); n != 2 {
		t.Fatalf("%d NOTIFYs sent while one was in flight", n-2)
	}
	close(release)
	p.waitN(3, 5*time.Second)
	time.Sleep(50 * time.Millisecond)
	got := p.waitN(p.count(), time.Second)
	if len(got) != 3 {
		t.Fatalf("%d NOTIFYs, want 3 (20 changes coalesced into one)", len(got))
	}
	if !strings.Contains(string(got[2].Body()), `id="t20"`) {
		t.Fatalf("coalesced NOTIFY is not the latest state: %s", got[2].Body())
	}
	for i := 1; i < len(got); i++ {
		if got[i].CSeq().SeqNo <= got[i-1].CSeq().SeqNo {
			t.Fatalf("CSeq %d after %d", got[i].CSeq().SeqNo, got[i-1].CSeq().SeqNo)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if maxInFlight != 1 {
		t.Fatalf("%d NOTIFYs in flight at once", maxInFlight)
	}
}

// NOTIFYs follow the route set taken from Record-Route.
func TestRouteSet(t *testing.T) {
	_, addr := startServer(t, DefaultConfig(), Options{})
	proxy := newPeer(t, func(int, *sip.Request) int { return 200 })
	p := newPeer(t, func(int, *sip.Request) int { return 200 })
	rr := &sip.RecordRouteHeader{Address: uri("sip:" + proxy.addr + ";lr")}
	p.subscribe(addr, "sip:alice@example.com", "presence", 600, rr)
	got := proxy.waitN(1, 5*time.Second)
	if r := got[0].Route(); r == nil || !strings.Contains(r.Address.String(), proxy.addr) {
		t.Fatalf("NOTIFY Route %v, want the proxy", r)
	}
	if got[0].Recipient.Host != "127.0.0.1" || got[0].Recipient.User != "peer" {
		t.Fatalf("NOTIFY Request-URI %s, want the watcher's contact", got[0].Recipient.String())
	}
	if p.count() != 0 {
		t.Fatal("NOTIFY bypassed the route set")
	}
}

// The Event header's id parameter comes back in every NOTIFY.
func TestEventIDEchoed(t *testing.T) {
	_, addr := startServer(t, DefaultConfig(), Options{})
	p := newPeer(t, func(int, *sip.Request) int { return 200 })
	if res := p.subscribe(addr, "sip:alice@example.com", "presence;id=42", 600); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
	}
	got := p.waitN(1, 5*time.Second)
	if ev := got[0].GetHeader("Event"); ev == nil || ev.Value() != "presence;id=42" {
		t.Fatalf("Event %v, want presence;id=42", ev)
	}
}

// A NOTIFY too large for UDP (a presentity with many dialogs) goes to the
// watcher's address over TCP (RFC 3261 §18.1.1) instead of failing.
func TestLargeNotifyOverTCP(t *testing.T) {
	s, addr := startServer(t, DefaultConfig(), Options{})
	pres := "sip:alice@example.com"
	bob := sipphone.NewPhone(t, "bob", "example.com")
	w, err := bob.Watch(context.Background(), addr, uri(pres), "dialog", sipphone.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wait(t, w, has("dialog-info"))
	for i := range 6 {
		id := fmt.Sprintf("call-%d-%s", i, strings.Repeat("x", 40))
		_ = s.Publish(pua.PublishRequest{Key: pua.Key{PresURI: pres, Event: "dialog", ID: id},
			Body: dialogBody(pres, 1, dialogdoc.Dialog{ID: id, CallID: id, Direction: "initiator", State: "early",
				Local: &dialogdoc.Participant{Identity: pres, Target: "sip:alice@192.0.2.1:5060"}})})
	}
	n := wait(t, w, func(n sipphone.Notification) bool { return strings.Count(n.Body, "<dialog ") == 6 })
	if len(n.Body) <= siplisten.MaxUDPRequest {
		t.Fatalf("the document is only %d bytes: the test proves nothing", len(n.Body))
	}
}

// refresh sends an in-dialog SUBSCRIBE of the dialog res accepted, with
// CSeq cseq and the Contact of contact (p itself, or the peer the watcher
// moved to).
func (p *peer) refresh(server string, res *sip.Response, cseq uint32, expires int, contact *peer) *sip.Response {
	p.t.Helper()
	from, to := res.From(), res.To()
	req := sip.NewRequest(sip.SUBSCRIBE, to.Address)
	req.AppendHeader(&sip.FromHeader{Address: from.Address, Params: from.Params.Clone()})
	req.AppendHeader(&sip.ToHeader{Address: to.Address, Params: to.Params.Clone()})
	cid := sip.CallIDHeader(res.CallID().Value())
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: sip.SUBSCRIBE})
	req.AppendHeader(&sip.ContactHeader{Address: uri("sip:peer@" + contact.addr)})
	req.AppendHeader(sip.NewHeader("Event", "presence"))
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	req.SetDestination(server)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := p.cl.Do(ctx, req)
	if err != nil {
		p.t.Fatal(err)
	}
	return r
}

// states returns the Subscription-State of every NOTIFY p got.
func (p *peer) states() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, n := range p.got {
		if h := n.GetHeader("Subscription-State"); h != nil {
			out = append(out, h.Value())
		}
	}
	return out
}

// A subscription that expires while its NOTIFYs back off is ended like
// any other, at its expiry: its terminated;reason=timeout NOTIFY is the
// next one sent, with the retry, and no NOTIFY calls it active past its
// expiry.
func TestExpiryDuringBackoff(t *testing.T) {
	t.Run("retry after the expiry", func(t *testing.T) {
		clk := clocktest.New(time.Unix(1_700_000_000, 0))
		cfg := DefaultConfig()
		cfg.RetryMin, cfg.RetryMax = 200*time.Second, 200*time.Second
		s, addr := startServer(t, cfg, Options{Clock: clk})
		p := newPeer(t, func(n int, _ *sip.Request) int {
			if n == 2 {
				return 503
			}
			return 200
		})
		p.subscribe(addr, "sip:alice@example.com", "presence", 60)
		p.waitN(1, 5*time.Second)
		clk.Advance(50 * time.Second)
		publishOpen(t, s, "sip:alice@example.com", "u", "t1")
		p.waitN(2, 5*time.Second)
		waitBackingOff(t, s) // 100 to 200s: the expiry comes first
		clk.Advance(11 * time.Second)
		clk.Advance(200 * time.Second)
		got := p.waitN(3, 5*time.Second)
		if st := p.states(); len(got) != 3 || st[2] != "terminated;reason=timeout" {
			t.Fatalf("NOTIFYs %q, want the terminated one after the failed one", st)
		}
		deadline := time.Now().Add(5 * time.Second)
		for s.subscriptionCount() != 0 {
			if time.Now().After(deadline) {
				t.Fatal("expired subscription kept")
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	t.Run("retry due with the expiry", func(t *testing.T) {
		clk := clocktest.New(time.Unix(1_700_000_000, 0))
		s, addr := startServer(t, DefaultConfig(), Options{Clock: clk})
		p := newPeer(t, func(n int, _ *sip.Request) int {
			if n == 2 {
				return 503
			}
			return 200
		})
		p.subscribe(addr, "sip:alice@example.com", "presence", 60)
		p.waitN(1, 5*time.Second)
		clk.Advance(59*time.Second + 900*time.Millisecond)
		publishOpen(t, s, "sip:alice@example.com", "u", "t1")
		p.waitN(2, 5*time.Second)
		waitBackingOff(t, s)
		clk.Advance(5 * time.Second) // past the expiry and the retry
		p.waitN(3, 5*time.Second)
		time.Sleep(50 * time.Millisecond)
		if st := p.states(); len(st) != 3 || st[2] != "terminated;reason=timeout" {
			t.Fatalf("NOTIFYs %q, want the terminated one after the failed one", st)
		}
	})
}

// waitBackingOff waits until a NOTIFY of s failed and waits for its
// retry.
func waitBackingOff(t *testing.T, s *Server) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		n := 0
		for _, w := range s.subs {
			if !w.retryAt.IsZero() {
				n++
			}
		}
		s.mu.Unlock()
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no NOTIFY backing off")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A refresh shows the watcher is there, at its Contact now: the NOTIFYs
// that failed before it (to the address it left) count no more. The one in
// flight failing does not end the subscription just refreshed, a backoff
// under way does not hold the refresh's NOTIFY, and the state goes to the
// new Contact.
func TestRefreshAfterFailedNotifies(t *testing.T) {
	// In flight: the third failure in a row under way at the refresh (a
	// real clock, fast retries), or the first one with a backoff whose
	// retry never comes (a fake clock): either way the state goes to the
	// new Contact at once, and the subscription stays.
	for _, tc := range []struct {
		name   string
		clock  clock.Clock
		nth    int // the NOTIFY in flight at the refresh
		waited string
	}{
		{"in flight", nil, 4, "no third NOTIFY attempt"},
		{"in flight, its failure after the refresh", clocktest.New(time.Unix(1_700_000_000, 0)), 2, "no NOTIFY of the change"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, addr := startServer(t, fastRetry(), Options{Clock: tc.clock}) // 3 failures end it
			moved := newPeer(t, func(int, *sip.Request) int { return 200 })
			inFlight := make(chan struct{}, 1)
			old := newPeer(t, func(n int, _ *sip.Request) int {
				switch n {
				case 1:
					return 200
				case tc.nth:
					inFlight <- struct{}{}
				}
				return 0 // gone: no answer
			})
			res := old.subscribe(addr, "sip:alice@example.com", "presence", 600)
			old.waitN(1, 5*time.Second)
			publishOpen(t, s, "sip:alice@example.com", "u", "t1")
			select {
			case <-inFlight:
			case <-time.After(5 * time.Second):
				t.Fatal(tc.waited)
			}
			if r := old.refresh(addr, res, res.CSeq().SeqNo+1, 600, moved); r.StatusCode != 200 {
				t.Fatalf("refresh: %d", r.StatusCode)
			}
			got := moved.waitN(1, 5*time.Second)
			if !strings.Contains(string(got[0].Body()), `id="t1"`) {
				t.Fatalf("NOTIFY at the new Contact lacks the state: %s", got[0].Body())
			}
			if ws := s.Watchers(); len(ws) != 1 {
				t.Fatalf("refreshed subscription ended: %+v", ws)
			}
		})
	}
	t.Run("backing off", func(t *testing.T) {
		clk := clocktest.New(time.Unix(1_700_000_000, 0)) // the retry never comes
		s, addr := startServer(t, DefaultConfig(), Options{Clock: clk})
		moved := newPeer(t, func(int, *sip.Request) int { return 200 })
		old := newPeer(t, func(n int, _ *sip.Request) int {
			if n == 1 {
				return 200
			}
			return 503
		})
		res := old.subscribe(addr, "sip:alice@example.com", "presence", 600)
		old.waitN(1, 5*time.Second)
		publishOpen(t, s, "sip:alice@example.com", "u", "t1")
		old.waitN(2, 5*time.Second)
		waitBackingOff(t, s)
		if r := old.refresh(addr, res, res.CSeq().SeqNo+1, 600, moved); r.StatusCode != 200 {
			t.Fatalf("refresh: %d", r.StatusCode)
		}
		got := moved.waitN(1, 5*time.Second)
		if !strings.Contains(string(got[0].Body()), `id="t1"`) {
			t.Fatalf("NOTIFY at the new Contact lacks the state: %s", got[0].Body())
		}
	})
}
