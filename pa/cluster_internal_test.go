package pa

import (
	"context"
	"testing"
	"time"
)

// lostOwnership holds no shard: the lease was lost.
type lostOwnership struct{}

func (lostOwnership) Owns(string) bool                { return false }
func (lostOwnership) Fence(string) (int, int64, bool) { return 0, 0, false }

// noChanges is an empty change log.
type noChanges struct{}

func (noChanges) LastPresenceChange(context.Context) (int64, error) { return 0, nil }
func (noChanges) PresenceChanges(context.Context, int64, int, func(int64, string) bool) ([]Change, error) {
	return nil, nil
}
func (noChanges) PrunePresenceChanges(context.Context, time.Duration) error { return nil }

// A subscription ended by a late answer (481, too many failures) is
// removed under the epoch its NOTIFY was sent with, so the store refuses
// it once the shard has a new owner; without one (the lease lost before)
// it is not written at all, never unfenced.
func TestClusterGoneFencedWithSendersEpoch(t *testing.T) {
	s, err := New(DefaultConfig(), Options{Store: newMemStore(),
		Cluster: &Cluster{Ownership: lostOwnership{}, Changes: noChanges{}, Instance: "a"}})
	if err != nil {
		t.Fatal(err)
	}
	w := &watcher{key: dialogKey{"c1", "f1"}, toTag: "t1", presURI: "sip:alice@example.com", watcherURI: "sip:bob@example.com",
		event: EventPresence}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.goneW[w.key] = w.record()
	s.fenceGone(w, fenceToken{shard: 1, epoch: 7, ok: true}, false)
	if r := s.goneW[w.key]; r.Shard != 1 || r.Epoch != 7 || r.Expired {
		t.Fatalf("removal %+v, want fenced with shard 1 epoch 7", r)
	}
	s.goneW[w.key] = w.record()
	s.fenceGone(w, s.fenceOf(w.presURI), false)
	if r, ok := s.goneW[w.key]; ok {
		t.Fatalf("removal without a fence queued: %+v", r)
	}
}
