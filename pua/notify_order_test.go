package pua

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// seqs returns the CSeq numbers of the NOTIFYs a handler saw.
func seqs(ns []Notify) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Headers("CSeq")
	}
	return out
}

func TestNotifyOlderCSeqRefused(t *testing.T) {
	fs := newFakeServer(t)
	e, nl := subEngine(t, fs, newFakeClock())
	if _, err := e.SubscribeWait(context.Background(), slaReq()); err != nil {
		t.Fatal(err)
	}
	sub := fs.Requests()[0]
	tag := e.Subscriptions()[0].RemoteTag
	for _, tc := range []struct {
		seq  uint32
		want int
	}{{5, 200}, {3, 500}, {4, 500}, {5, 200}, {9, 200}, {6, 500}} {
		res := notifySeq(t, fs, sub, tag, "active;expires=100", tc.seq)
		if res == nil || res.StatusCode != tc.want {
			t.Fatalf("NOTIFY CSeq %d answered %v, want %d", tc.seq, res, tc.want)
		}
		if tc.want == 500 && headerValue(res, "Retry-After") == "" {
			t.Fatalf("500 to an old NOTIFY without Retry-After:\n%s", res.String())
		}
	}
	if got, want := seqs(nl.all()), []string{"5 NOTIFY", "5 NOTIFY", "9 NOTIFY"}; !slices.Equal(got, want) {
		t.Fatalf("handler saw CSeqs %v, want %v", got, want)
	}
	// The subscription survives the refusals.
	if s, ok := e.Subscription(slaKey); !ok || s.State != StateActive {
		t.Fatalf("subscription after refusals: %+v %v", s, ok)
	}
	// A new dialog starts a new remote sequence.
	if res := notifySeq(t, fs, sub, tag, "terminated;reason=timeout", 10); res == nil || res.StatusCode != 200 {
		t.Fatalf("terminated NOTIFY answered %v", res)
	}
	if _, err := e.SubscribeWait(context.Background(), slaReq()); err != nil {
		t.Fatal(err)
	}
	sub2 := fs.Requests()[len(fs.Requests())-1]
	tag2 := e.Subscriptions()[0].RemoteTag
	if res := notifySeq(t, fs, sub2, tag2, "active", 1); res == nil || res.StatusCode != 200 {
		t.Fatalf("first NOTIFY of a new dialog answered %v", res)
	}
}

func TestNotifiesOfOneDialogReachHandlerInOrder(t *testing.T) {
	fs := newFakeServer(t)
	e := newTestEngine(t, fs, newFakeClock(), nil, func(c *Config) { c.OutboundProxy = fs.URI() })
	var (
		mu      sync.Mutex
		inside  int
		maxIn   int
		order   []string
		entered = make(chan struct{}, 4)
		release = make(chan struct{})
	)
	e.HandleNotify(FlagBLASubscribe, func(ctx context.Context, n Notify) (int, string) {
		mu.Lock()
		inside++
		maxIn = max(maxIn, inside)
		order = append(order, n.Headers("CSeq"))
		first := len(order) == 1
		mu.Unlock()
		entered <- struct{}{}
		if first {
			<-release
		}
		mu.Lock()
		inside--
		mu.Unlock()
		return 200, "OK"
	})
	if _, err := e.SubscribeWait(context.Background(), slaReq()); err != nil {
		t.Fatal(err)
	}
	sub := fs.Requests()[0]
	tag := e.Subscriptions()[0].RemoteTag
	codes := make(chan int, 2)
	send := func(seq uint32) {
		res := notifySeq(t, fs, sub, tag, "active", seq)
		if res == nil {
			codes <- 0
			return
		}
		codes <- res.StatusCode
	}
	go send(10)
	<-entered // the first NOTIFY is in the handler, which holds it
	go send(11)
	// Give the second NOTIFY every chance to overtake the first one.
	time.Sleep(200 * time.Millisecond)
	close(release)
	for range 2 {
		if c := <-codes; c != 200 {
			t.Fatalf("NOTIFY answered %d", c)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if maxIn != 1 || !slices.Equal(order, []string{"10 NOTIFY", "11 NOTIFY"}) {
		t.Fatalf("handler ran %d at once, order %v", maxIn, order)
	}
}

func TestRefreshSendsInDialogSubscribe(t *testing.T) {
	fs := newFakeServer(t)
	e, _ := subEngine(t, fs, newFakeClock())
	if err := e.Refresh(slaKey); err != nil { // unknown: nothing to do
		t.Fatal(err)
	}
	if _, err := e.SubscribeWait(context.Background(), slaReq()); err != nil {
		t.Fatal(err)
	}
	if err := e.Refresh(slaKey); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "refresh", countIs(fs, 2))
	first, ref := fs.Requests()[0], fs.Requests()[1]
	if tag, _ := ref.To().Params.Get("tag"); tag == "" || ref.CallID().Value() != first.CallID().Value() ||
		ref.CSeq().SeqNo != first.CSeq().SeqNo+1 {
		t.Fatalf("not an in-dialog refresh:\n%s", ref.String())
	}
	waitFor(t, "active", func() bool { s, _ := e.Subscription(slaKey); return s.State == StateActive })
}

// blockingStore is a memStore whose LoadRecords waits for release.
type blockingStore struct {
	*memStore
	entered chan struct{}
	release chan struct{}
}

func (b *blockingStore) LoadRecords(ctx context.Context) ([]Record, error) {
	close(b.entered)
	<-b.release
	return b.memStore.LoadRecords(ctx)
}

// A NOTIFY of a stored subscription that arrives while the engine loads
// its records waits for them instead of being answered 481.
func TestNotifyDuringLoadWaits(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	e1 := newTestEngine(t, fs, clk, st, func(c *Config) { c.OutboundProxy = fs.URI() })
	if _, err := e1.SubscribeWait(context.Background(), slaReq()); err != nil {
		t.Fatal(err)
	}
	tag := e1.Subscriptions()[0].RemoteTag
	if err := e1.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}

	bs := &blockingStore{memStore: st, entered: make(chan struct{}), release: make(chan struct{})}
	cfg := DefaultConfig()
	cfg.Listen = []string{"udp:127.0.0.1:0"}
	cfg.ServerAddress, cfg.OutboundProxy = fs.URI(), fs.URI()
	cfg.RequestTimeout = 400 * time.Millisecond
	e2, err := New(cfg, Options{Logger: e1.log, Clock: clk, Store: bs})
	if err != nil {
		t.Fatal(err)
	}
	nl := &notifyLog{}
	e2.HandleNotify(FlagBLASubscribe, nl.handler)
	started := make(chan error, 1)
	go func() { started <- e2.Start(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e2.Stop(ctx)
	})
	<-bs.entered // listening, records not loaded yet

	sub := fs.Requests()[0].Clone()
	var contact sip.Uri
	if err := sip.ParseUri(e2.ContactURI(), &contact); err != nil {
		t.Fatal(err)
	}
	sub.RemoveHeader("Contact")
	sub.AppendHeader(&sip.ContactHeader{Address: contact})
	code := make(chan int, 1)
	go func() {
		res := notifySeq(t, fs, sub, tag, "active;expires=60", 7)
		if res == nil {
			code <- 0
			return
		}
		code <- res.StatusCode
	}()
	time.Sleep(100 * time.Millisecond) // time for the NOTIFY to be answered early
	close(bs.release)
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	if c := <-code; c != 200 || len(nl.all()) != 1 {
		t.Fatalf("NOTIFY during the load answered %d (handler saw %d)", c, len(nl.all()))
	}
}
