package pa

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

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
