package pa

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/clock/clocktest"
	"github.com/puaside/puaside/pua"
)

// memStore is an in-memory Store that applies batches as the SQL store does.
type memStore struct {
	mu   sync.Mutex
	pubs map[pubID]PublicationRecord
	subs map[dialogKey]WatcherRecord
}

func newMemStore() *memStore {
	return &memStore{pubs: map[pubID]PublicationRecord{}, subs: map[dialogKey]WatcherRecord{}}
}

func (m *memStore) LoadPresence(context.Context) ([]PublicationRecord, []WatcherRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ps []PublicationRecord
	for _, p := range m.pubs {
		ps = append(ps, p)
	}
	var ws []WatcherRecord
	for _, w := range m.subs {
		ws = append(ws, w)
	}
	return ps, ws, nil
}

func (m *memStore) ApplyPresence(_ context.Context, b Batch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range b.RemovedPublications {
		delete(m.pubs, pubID{presKey{r.PresURI, r.Event}, r.ID})
	}
	for _, r := range b.Publications {
		m.pubs[pubID{presKey{r.PresURI, r.Event}, r.ID}] = r
	}
	for _, r := range b.RemovedWatchers {
		delete(m.subs, dialogKey{r.CallID, r.FromTag})
	}
	for _, r := range b.Watchers {
		m.subs[dialogKey{r.CallID, r.FromTag}] = r
	}
	return nil
}

// After a restart every subscription continues: the next change reaches
// each watcher with a higher CSeq, without a new SUBSCRIBE.
func TestRestartKeepsSubscriptions(t *testing.T) {
	st := newMemStore()
	cfg := DefaultConfig()
	cfg.Listen = []string{"udp:127.0.0.1:0"}
	a, err := New(cfg, Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(a.Addrs()[0], "udp:")
	const n = 20
	peers := make([]*peer, n)
	for i := range peers {
		peers[i] = newPeer(t, func(int, *sip.Request) int { return 200 })
		if res := peers[i].subscribe(addr, "sip:alice@example.com", "presence", 600); res.StatusCode != 200 {
			t.Fatalf("SUBSCRIBE %d: %d", i, res.StatusCode)
		}
	}
	// Enough changes to use up the first CSeq reserve of every dialog.
	for i := 0; i < cseqBlock+5; i++ {
		publishOpen(t, a, "sip:alice@example.com", "usrloc", "t"+itoa3(i))
		for _, p := range peers {
			p.waitN(i+2, 5*time.Second)
		}
	}
	_ = a.Publish(pua.PublishRequest{Key: pua.Key{PresURI: "sip:alice@example.com", Event: "presence", ID: "gone"},
		Body: presenceBody("sip:alice@example.com", "g", "open"), Flag: pua.FlagDialogPublish})
	for _, p := range peers {
		p.waitN(cseqBlock+7, 5*time.Second)
	}
	last := make([]uint32, n)
	seen := make([]int, n)
	for i, p := range peers {
		got := p.waitN(p.count(), time.Second)
		last[i], seen[i] = got[len(got)-1].CSeq().SeqNo, len(got)
	}
	// Without Stop's final write: what the writer has written is all.
	time.Sleep(50 * time.Millisecond)
	a.cancel()
	a.sipMu.Lock()
	a.ua.Close()
	a.sipMu.Unlock()
	a.mu.Lock()
	a.stopped = true
	a.mu.Unlock()

	b, err := New(cfg, Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Stop(context.Background()) })
	if got := len(b.Watchers()); got != n {
		t.Fatalf("%d subscriptions after restart, want %d", got, n)
	}
	if !b.Claim(pua.Key{PresURI: "sip:alice@example.com", Event: "presence", ID: "usrloc"}) {
		t.Fatal("restored publication not held")
	}
	b.ClaimsDone(pua.FlagUsrloc)
	b.ClaimsDone(pua.FlagDialogPublish) // "gone" is swept: nobody claimed it
	for i, p := range peers {
		got := p.waitN(seen[i]+1, 5*time.Second)
		nt := got[len(got)-1]
		if nt.CSeq().SeqNo <= last[i] {
			t.Fatalf("watcher %d: CSeq %d after %d", i, nt.CSeq().SeqNo, last[i])
		}
		if strings.Contains(string(nt.Body()), `id="g"`) {
			t.Fatalf("unclaimed publication still composed: %s", nt.Body())
		}
	}
}

func itoa3(i int) string {
	return string([]byte{byte('0' + i/100%10), byte('0' + i/10%10), byte('0' + i%10)})
}

// Publications lists what the trackers compare with their own state at
// start, with the owner's flag.
func TestPublicationsListing(t *testing.T) {
	s, _ := startServer(t, DefaultConfig(), Options{})
	_ = s.Publish(pua.PublishRequest{Key: pua.Key{PresURI: "sip:alice@example.com", Event: "presence", ID: "usrloc"},
		Body: presenceBody("sip:alice@example.com", "t", "open"), Flag: pua.FlagUsrloc,
		ExtraHeaders: []pua.Header{{Name: "Sender", Value: "sip:alice@10.0.0.1"}}})
	ps := s.Publications()
	if len(ps) != 1 || ps[0].Flag != pua.FlagUsrloc || ps[0].State != pua.StateActive || len(ps[0].ExtraHeaders) != 1 {
		t.Fatalf("publications %+v", ps)
	}
}

// publishSIP sends a PUBLISH from outside (RFC 3903) through cl and
// returns its answer.
func publishSIP(t *testing.T, cl *sipgo.Client, server, pres, event, ct string, expires int, body []byte) *sip.Response {
	t.Helper()
	req := sip.NewRequest(sip.PUBLISH, uri(pres))
	req.AppendHeader(&sip.FromHeader{Address: uri(pres), Params: tagged(sip.GenerateTagN(8))})
	req.AppendHeader(&sip.ToHeader{Address: uri(pres), Params: sip.NewParams()})
	req.AppendHeader(sip.NewHeader("Event", event))
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	req.AppendHeader(sip.NewHeader("Content-Type", ct))
	req.SetBody(body)
	req.SetDestination(server)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := cl.Do(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// A publication that expired while the server was down is gone after the
// restart, and its watchers are told at once: the phone's lamp does not
// stay lit with the state of a publication nobody holds any more.
func TestRestartTellsPublicationsExpiredWhileDown(t *testing.T) {
	st := newMemStore()
	clk := clocktest.New(time.Unix(1_700_000_000, 0))
	a, addr := startServer(t, DefaultConfig(), Options{Store: st, Clock: clk})
	pres := "sip:alice@example.com"
	p := newPeer(t, func(int, *sip.Request) int { return 200 })
	if res := p.subscribe(addr, pres, "presence", 600); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
	}
	p.waitN(1, 5*time.Second)
	// The owner of sip:peer@example.com watches its watchers; one of them
	// subscribed for a minute only.
	owner := newPeer(t, func(int, *sip.Request) int { return 200 })
	if res := owner.subscribe(addr, "sip:peer@example.com", "presence.winfo", 600); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE presence.winfo: %d", res.StatusCode)
	}
	owner.waitN(1, 5*time.Second)
	short := newPeer(t, func(int, *sip.Request) int { return 200 })
	if res := short.subscribe(addr, "sip:peer@example.com", "presence", 60); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
	}
	if wi := owner.waitN(2, 5*time.Second); !strings.Contains(string(wi[1].Body()), "<watcher ") {
		t.Fatalf("winfo without the watcher: %s", wi[1].Body())
	}
	if res := publishSIP(t, p.cl, addr, pres, "presence", ctPIDF, 60, presenceBody(pres, "desk", "open")); res.StatusCode != 200 {
		t.Fatalf("PUBLISH: %d", res.StatusCode)
	}
	got := p.waitN(2, 5*time.Second)
	if !strings.Contains(string(got[1].Body()), `id="desk"`) {
		t.Fatalf("published state not notified: %s", got[1].Body())
	}
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Minute) // the publication lapses, the subscription does not

	b, _ := startServer(t, DefaultConfig(), Options{Store: st, Clock: clk})
	if ps := b.Presentities(); len(ps) != 0 {
		t.Fatalf("expired publication restored: %+v", ps)
	}
	got = p.waitN(3, 5*time.Second)
	n := got[2]
	if body := string(n.Body()); strings.Contains(body, `id="desk"`) || !strings.Contains(body, "<basic>closed</basic>") {
		t.Fatalf("NOTIFY after the restart still tells the expired publication: %s", body)
	}
	if n.CSeq().SeqNo <= got[1].CSeq().SeqNo {
		t.Fatalf("CSeq %d after %d", n.CSeq().SeqNo, got[1].CSeq().SeqNo)
	}
	if st := n.GetHeader("Subscription-State"); st == nil || !strings.HasPrefix(st.Value(), "active;expires=") {
		t.Fatalf("Subscription-State %v", st)
	}
	// The subscription that lapsed meanwhile is gone from the owner's list.
	if wi := owner.waitN(3, 5*time.Second); strings.Contains(string(wi[2].Body()), "<watcher ") {
		t.Fatalf("winfo after the restart still lists the expired subscription: %s", wi[2].Body())
	}
}

// A subscription that expired while the server was down gets its final
// NOTIFY (terminated;reason=timeout, RFC 6665 §4.2.2) after the restart,
// as one expiring while the server runs does: the phone learns that its
// subscription is over and subscribes again, instead of keeping the
// lamp's last state.
func TestRestartEndsSubscriptionsExpiredWhileDown(t *testing.T) {
	st := newMemStore()
	clk := clocktest.New(time.Unix(1_700_000_000, 0))
	a, addr := startServer(t, DefaultConfig(), Options{Store: st, Clock: clk})
	pres := "sip:alice@example.com"
	p := newPeer(t, func(int, *sip.Request) int { return 200 })
	if res := p.subscribe(addr, pres, "presence", 120); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
	}
	p.waitN(1, 5*time.Second)
	publishOpen(t, a, pres, "usrloc", "t1")
	last := p.waitN(2, 5*time.Second)[1]
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	clk.Advance(3 * time.Minute)

	b, _ := startServer(t, DefaultConfig(), Options{Store: st, Clock: clk})
	if ws := b.Watchers(); len(ws) != 0 {
		t.Fatalf("expired subscription listed after the restart: %+v", ws)
	}
	n := p.waitN(3, 5*time.Second)[2]
	if ss := n.GetHeader("Subscription-State"); ss == nil || ss.Value() != "terminated;reason=timeout" {
		t.Fatalf("Subscription-State %v, want terminated;reason=timeout", ss)
	}
	if n.CSeq().SeqNo <= last.CSeq().SeqNo {
		t.Fatalf("CSeq %d after %d", n.CSeq().SeqNo, last.CSeq().SeqNo)
	}
	if ft, _ := n.From().Params.Get("tag"); ft == "" {
		t.Fatal("final NOTIFY without the dialog's tag")
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.subscriptionCount() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("expired subscription kept after its final NOTIFY")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for {
		_, subs, _ := st.LoadPresence(context.Background())
		if len(subs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("expired subscription still stored: %+v", subs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if c := p.count(); c != 3 {
		t.Fatalf("%d NOTIFYs, want one final NOTIFY after the restart", c)
	}
}

// A subscription that ended longer ago than the longest lease (max_expires)
// while the server was down is only removed: its watcher has long given
// up, and a restart after a long outage sends no burst of final NOTIFYs.
func TestRestartForgetsLongExpiredSubscriptions(t *testing.T) {
	st := newMemStore()
	clk := clocktest.New(time.Unix(1_700_000_000, 0))
	a, addr := startServer(t, DefaultConfig(), Options{Store: st, Clock: clk})
	p := newPeer(t, func(int, *sip.Request) int { return 200 })
	if res := p.subscribe(addr, "sip:alice@example.com", "presence", 120); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
	}
	p.waitN(1, 5*time.Second)
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2*time.Minute + DefaultConfig().MaxExpires + time.Second)
	b, _ := startServer(t, DefaultConfig(), Options{Store: st, Clock: clk})
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, subs, _ := st.LoadPresence(context.Background())
		if len(subs) == 0 && b.subscriptionCount() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("long expired subscription kept: %d stored, %d in memory", len(subs), b.subscriptionCount())
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if c := p.count(); c != 1 {
		t.Fatalf("%d NOTIFYs, want none after the restart", c)
	}
}
