package pua

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/puaside/puaside/internal/puatest"
)

// fakeOwnership is an Ownership over fixed shards per URI.
type fakeOwnership struct {
	mu    sync.Mutex
	shard map[string]int
	held  map[int]int64 // shard -> epoch of the lease held
	lapse map[int]bool  // held but past the guard: no sending
}

func newFakeOwnership(shards map[string]int) *fakeOwnership {
	return &fakeOwnership{shard: shards, held: map[int]int64{}, lapse: map[int]bool{}}
}

func (o *fakeOwnership) Owns(uri string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.shard[uri]
	_, ok := o.held[s]
	return ok && !o.lapse[s]
}

func (o *fakeOwnership) Fence(uri string) (int, int64, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.shard[uri]
	ep, ok := o.held[s]
	return s, ep, ok
}

func (o *fakeOwnership) set(f func(o *fakeOwnership)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f(o)
}

// clusterEngine starts an engine on st whose shards own decides, with a
// day-long InitialExpires (mod, when set, changes the configuration
// further).
func clusterEngine(t *testing.T, fs *fakeServer, clk *fakeClock, st Store, own *fakeOwnership, mod func(*Config)) *Engine {
	t.Helper()
	cfg := testConfig(fs)
	cfg.InitialExpires = 24 * time.Hour
	if mod != nil {
		mod(&cfg)
	}
	return startTestEngine(t, cfg, Options{Clock: clk, Store: st, Ownership: own})
}

// TestClusterSendsAndWritesOnlyForOwnedShards: a presentity of a shard
// another instance holds is neither sent nor written; once its shard is
// gained the engine continues the previous owner's stored ETag with the
// current state; when the lease lapses nothing more is sent, and once lost
// nothing more is written.
func TestClusterSendsAndWritesOnlyForOwnedShards(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	const alice, bob = "sip:alice@example.com", "sip:bob@example.com"
	own := newFakeOwnership(map[string]int{alice: 0, bob: 1})
	own.held[0] = 1
	// bob's publication, stored by the instance that owned shard 1.
	st.put(storedPub(clk, bob, "presence", "api", "e-bob-old", FlagRPCPublish, pidf("old")))
	e := clusterEngine(t, fs, clk, st, own, nil)
	e.ShardsGained(context.Background(), map[int]int64{0: 1})

	bobKey := Key{PresURI: bob, Event: "presence", ID: "api"}
	aliceKey := Key{PresURI: alice, Event: "presence", ID: "api"}
	if err := e.Publish(PublishRequest{Key: bobKey, Body: pidf("new"), Flag: FlagRPCPublish}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.PublishWait(ctx, PublishRequest{Key: aliceKey, Body: pidf("a1"), Flag: FlagRPCPublish}); err != nil {
		t.Fatalf("owned publication: %v", err)
	}
	if err := e.flush(ctx, false); err != nil {
		t.Fatal(err)
	}
	if n := len(requestsTo(fs, bob)); n != 0 {
		t.Fatalf("%d PUBLISH for a presentity of a shard held elsewhere", n)
	}
	if row, _ := st.row(bobKey, FlagRPCPublish); row.ETag != "e-bob-old" || !bytes.Equal(row.Body, pidf("old")) {
		t.Fatalf("the owner's row was overwritten: %+v", row)
	}
	if row, ok := st.row(aliceKey, FlagRPCPublish); !ok || row.Shard != 0 || row.Epoch != 1 {
		t.Fatalf("owned row %+v (stored %v), want shard 0 epoch 1", row, ok)
	}

	// Shard 1 is taken over at epoch 5: bob continues with the stored ETag.
	own.set(func(o *fakeOwnership) { o.held[1] = 5 })
	e.ShardsGained(ctx, map[int]int64{1: 5})
	waitFor(t, "bob's PUBLISH after the takeover", func() bool { return len(requestsTo(fs, bob)) == 1 })
	req := requestsTo(fs, bob)[0]
	if got := headerValue(req, "SIP-If-Match"); got != "e-bob-old" {
		t.Fatalf("takeover PUBLISH SIP-If-Match %q, want the stored e-bob-old", got)
	}
	if !bytes.Equal(req.Body(), pidf("new")) {
		t.Fatalf("takeover PUBLISH body %q, want the current state", req.Body())
	}
	waitFor(t, "bob's row under epoch 5", func() bool {
		row, _ := st.row(bobKey, FlagRPCPublish)
		return row.Epoch == 5 && row.ETag != "e-bob-old"
	})

	// Shard 0's lease lapses (renewals late): nothing more is sent.
	own.set(func(o *fakeOwnership) { o.lapse[0] = true })
	before := len(requestsTo(fs, alice))
	if err := e.Publish(PublishRequest{Key: aliceKey, Body: pidf("a2"), Flag: FlagRPCPublish}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Hour) // every refresh falls due
	if _, err := e.PublishWait(ctx, PublishRequest{Key: bobKey, Body: pidf("new2"), Flag: FlagRPCPublish}); err != nil {
		t.Fatal(err)
	}
	if n := len(requestsTo(fs, alice)); n != before {
		t.Fatalf("%d PUBLISH sent for a lapsed shard", n-before)
	}
	// It is lost: the pending row is written (the fence still allows), then
	// no row of it is written any more.
	e.ShardLost(ctx, 0)
	own.set(func(o *fakeOwnership) { delete(o.held, 0) })
	if row, _ := st.row(aliceKey, FlagRPCPublish); !bytes.Equal(row.Body, pidf("a2")) || row.ETag == "" {
		t.Fatalf("pending row at hand-over: %+v", row)
	}
	if err := e.Publish(PublishRequest{Key: aliceKey, Body: pidf("a3"), Flag: FlagRPCPublish}); err != nil {
		t.Fatal(err)
	}
	if err := e.flush(ctx, false); err != nil {
		t.Fatal(err)
	}
	if row, _ := st.row(aliceKey, FlagRPCPublish); !bytes.Equal(row.Body, pidf("a2")) || row.ETag == "" {
		t.Fatalf("a lost shard's row was written: %+v", row)
	}
	if n := len(requestsTo(fs, alice)); n != before {
		t.Fatalf("%d PUBLISH sent for a lost shard", n-before)
	}
}

// TestClusterAdoptedDocumentKeptOnce: a publication whose shard is taken
// over, holding the very document the previous owner stored, keeps one
// copy of it (not a second one as the document the server accepted).
func TestClusterAdoptedDocumentKeptOnce(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	const bob = "sip:bob@example.com"
	own := newFakeOwnership(map[string]int{bob: 1})
	st.put(storedPub(clk, bob, "presence", "api", "e-bob", FlagRPCPublish, pidf("same")))
	e := clusterEngine(t, fs, clk, st, own, nil)
	key := Key{PresURI: bob, Event: "presence", ID: "api"}
	if err := e.Publish(PublishRequest{Key: key, Body: pidf("same"), Flag: FlagRPCPublish}); err != nil {
		t.Fatal(err)
	}
	own.set(func(o *fakeOwnership) { o.held[1] = 5 })
	e.ShardsGained(context.Background(), map[int]int64{1: 5})
	s := e.pubShard(key)
	s.mu.Lock()
	r := s.pubs[key]
	held, once := r.serverHolds(), unsafe.SliceData(r.ackBody) == unsafe.SliceData(r.body)
	s.mu.Unlock()
	if !held || !once {
		t.Fatalf("server holds the document %v, kept once %v", held, once)
	}
	if n := len(requestsTo(fs, bob)); n != 0 {
		t.Fatalf("%d PUBLISH for a document the server holds", n)
	}
}

// TestClusterResumesAfterLapse: a lease that lapsed and was renewed (same
// epoch) resumes sending with what the engine holds.
func TestClusterResumesAfterLapse(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	const alice = "sip:alice@example.com"
	own := newFakeOwnership(map[string]int{alice: 0})
	own.held[0], own.lapse[0] = 1, true
	e := clusterEngine(t, fs, clk, st, own, nil)
	key := Key{PresURI: alice, Event: "presence", ID: "api"}
	if err := e.Publish(PublishRequest{Key: key, Body: pidf("a1"), Flag: FlagRPCPublish}); err != nil {
		t.Fatal(err)
	}
	own.set(func(o *fakeOwnership) { o.lapse[0] = false })
	e.ShardsGained(context.Background(), map[int]int64{0: 1})
	waitFor(t, "alice's PUBLISH after the renewal", func() bool { return len(requestsTo(fs, alice)) == 1 })
	if got := headerValue(requestsTo(fs, alice)[0], "SIP-If-Match"); got != "" {
		t.Fatalf("initial PUBLISH with SIP-If-Match %q", got)
	}
}

// TestClusterResumeKeepsNewerETag: a lease renewed after a lapse (same
// epoch) does not adopt the stored rows of its shard, which may lag what
// the engine holds (here the row still shows the ETag the server has
// replaced): the next change goes under the ETag the engine holds, and a
// stored row of a publication removed meanwhile is not brought back.
func TestClusterResumeKeepsNewerETag(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	const alice = "sip:alice@example.com"
	own := newFakeOwnership(map[string]int{alice: 0})
	own.held[0] = 1
	e := clusterEngine(t, fs, clk, st, own, nil)
	e.ShardsGained(context.Background(), map[int]int64{0: 1})
	key := Key{PresURI: alice, Event: "presence", ID: "api"}
	gone := Key{PresURI: alice, Event: "presence", ID: "gone"}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	mustWait(t, e, PublishRequest{Key: key, Body: pidf("a1"), Flag: FlagRPCPublish}) // etag1
	waitFor(t, "etag1 stored", func() bool { r, _ := st.row(key, FlagRPCPublish); return r.ETag == "etag1" })
	stale, _ := st.row(key, FlagRPCPublish)
	mustWait(t, e, PublishRequest{Key: key, Body: pidf("a2"), Flag: FlagRPCPublish}) // etag2
	mustWait(t, e, PublishRequest{Key: gone, Body: pidf("g"), Flag: FlagRPCPublish}) // etag3
	waitFor(t, "gone stored", func() bool { _, ok := st.row(gone, FlagRPCPublish); return ok })
	staleGone, _ := st.row(gone, FlagRPCPublish)
	if res, err := e.RemoveWait(ctx, gone); err != nil || res.Status != 200 {
		t.Fatalf("remove: %+v %v", res, err)
	}
	waitFor(t, "etag2 stored, gone deleted", func() bool {
		r, _ := st.row(key, FlagRPCPublish)
		_, ok := st.row(gone, FlagRPCPublish)
		return r.ETag == "etag2" && !ok
	})
	// The writes of the last changes did not reach the database.
	st.put(stale, staleGone)

	own.set(func(o *fakeOwnership) { o.lapse[0] = true })
	own.set(func(o *fakeOwnership) { o.lapse[0] = false })
	e.ShardsGained(ctx, map[int]int64{0: 1})
	n := len(fs.Requests())
	if _, err := e.PublishWait(ctx, PublishRequest{Key: key, Body: pidf("a3"), Flag: FlagRPCPublish}); err != nil {
		t.Fatal(err)
	}
	reqs := fs.Requests()
	if len(reqs) != n+1 {
		t.Fatalf("%d requests after the renewal, want 1", len(reqs)-n)
	}
	checkPublish(t, reqs[n], wire{ifMatch: "etag2", body: string(pidf("a3")), expires: "3600"})
	if _, ok := e.Publication(gone); ok {
		t.Fatal("a removed publication was brought back from its stored row")
	}
}

// TestClusterStaleEpochNotRetried: rows the store refuses for a stale
// epoch are not written again.
func TestClusterStaleEpochNotRetried(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := &staleStore{memStore: newMemStore()}
	const alice = "sip:alice@example.com"
	own := newFakeOwnership(map[string]int{alice: 0})
	own.held[0] = 1
	e := clusterEngine(t, fs, clk, st, own, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.ShardsGained(ctx, map[int]int64{0: 1})
	if _, err := e.PublishWait(ctx, PublishRequest{Key: Key{PresURI: alice, Event: "presence", ID: "api"},
		Body: pidf("a1"), Flag: FlagRPCPublish}); err != nil {
		t.Fatal(err)
	}
	if err := e.flush(ctx, false); err != nil {
		t.Fatalf("flush with a stale epoch: %v, want nil (not retried)", err)
	}
	n := st.calls()
	if err := e.flush(ctx, false); err != nil {
		t.Fatal(err)
	}
	if st.calls() != n {
		t.Fatal("refused rows written again")
	}
}

// staleStore refuses every fenced row as a successor's lease would.
type staleStore struct {
	*memStore
	mu sync.Mutex
	n  int
}

func (s *staleStore) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func (s *staleStore) SaveRecords(ctx context.Context, up, rm []Record) error {
	s.mu.Lock()
	s.n++
	s.mu.Unlock()
	var keep []Record
	refused := 0
	for _, r := range up {
		if r.Epoch != 0 {
			refused++
			continue
		}
		keep = append(keep, r)
	}
	if err := s.memStore.SaveRecords(ctx, keep, rm); err != nil {
		return err
	}
	if refused > 0 {
		return &StaleEpochError{Shards: []int{0}, Refused: refused}
	}
	return nil
}

// TestClusterHandOverWaitsForInFlight: a shard released while a PUBLISH
// is in flight is handed over with the ETag of its reply, not the one it
// replaced.
func TestClusterHandOverWaitsForInFlight(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	const alice = "sip:alice@example.com"
	own := newFakeOwnership(map[string]int{alice: 0})
	own.held[0] = 1
	e := clusterEngine(t, fs, clk, st, own, func(c *Config) { c.RequestTimeout = 5 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.ShardsGained(ctx, map[int]int64{0: 1})
	key := Key{PresURI: alice, Event: "presence", ID: "api"}
	if _, err := e.PublishWait(ctx, PublishRequest{Key: key, Body: pidf("a1"), Flag: FlagRPCPublish}); err != nil {
		t.Fatal(err)
	}
	fs.Push(puatest.Reply{Code: 200, ETag: "e-after-modify", Hold: true})
	if err := e.Publish(PublishRequest{Key: key, Body: pidf("a2"), Flag: FlagRPCPublish}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the modify in flight", func() bool { return len(requestsTo(fs, alice)) == 2 })
	own.set(func(o *fakeOwnership) { o.lapse[0] = true }) // released: no sending
	done := make(chan struct{})
	go func() { e.ShardLost(ctx, 0); close(done) }()
	select {
	case <-done:
		t.Fatal("hand-over did not wait for the PUBLISH in flight")
	case <-time.After(100 * time.Millisecond):
	}
	fs.Release()
	<-done
	if row, _ := st.row(key, FlagRPCPublish); row.ETag != "e-after-modify" || !bytes.Equal(row.Body, pidf("a2")) {
		t.Fatalf("handed-over row %+v, want the modify's ETag and body", row)
	}
}

// TestClusterNothingBeforeContinued: a shard whose lease is held but whose
// records are not continued yet (the rows not read) is neither sent nor
// written for: a tracker's change in that moment would publish anew and
// overwrite the previous owner's ETag.
func TestClusterNothingBeforeContinued(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	const alice = "sip:alice@example.com"
	own := newFakeOwnership(map[string]int{alice: 0})
	st.put(storedPub(clk, alice, "presence", "api", "e-old", FlagRPCPublish, pidf("old")))
	e := clusterEngine(t, fs, clk, st, own, nil)
	key := Key{PresURI: alice, Event: "presence", ID: "api"}
	own.set(func(o *fakeOwnership) { o.held[0] = 2 }) // taken, not continued yet
	if err := e.Publish(PublishRequest{Key: key, Body: pidf("new"), Flag: FlagRPCPublish}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.flush(ctx, false); err != nil {
		t.Fatal(err)
	}
	if n := len(requestsTo(fs, alice)); n != 0 {
		t.Fatalf("%d PUBLISH before the shard's records were continued", n)
	}
	if row, _ := st.row(key, FlagRPCPublish); row.ETag != "e-old" {
		t.Fatalf("row overwritten before the shard's records were continued: %+v", row)
	}
	e.ShardsGained(ctx, map[int]int64{0: 2})
	waitFor(t, "alice's PUBLISH once continued", func() bool { return len(requestsTo(fs, alice)) == 1 })
	if got := headerValue(requestsTo(fs, alice)[0], "SIP-If-Match"); got != "e-old" {
		t.Fatalf("SIP-If-Match %q, want the stored e-old", got)
	}
}

// TestClusterRegainedAtNewEpochAdopts: a shard gained again at another
// epoch without being lost in between (its lease expired and was taken
// and released by another instance meanwhile) adopts the stored rows,
// which that instance wrote: the next change goes under its ETag.
func TestClusterRegainedAtNewEpochAdopts(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	own := newFakeOwnership(map[string]int{alice: 0})
	own.held[0] = 1
	e := clusterEngine(t, fs, clk, st, own, nil)
	ctx := context.Background()
	e.ShardsGained(ctx, map[int]int64{0: 1})
	key := Key{PresURI: alice, Event: "presence", ID: "api"}
	mustWait(t, e, PublishRequest{Key: key, Body: pidf("a1"), Flag: FlagRPCPublish})
	waitFor(t, "etag1 stored", func() bool { r, _ := st.row(key, FlagRPCPublish); return r.ETag == "etag1" })
	own.set(func(o *fakeOwnership) { o.lapse[0] = true })
	row, _ := st.row(key, FlagRPCPublish)
	row.ETag, row.Epoch = "e-other", 2 // the other instance's row
	st.put(row)
	own.set(func(o *fakeOwnership) { o.lapse[0], o.held[0] = false, 3 })
	e.ShardsGained(ctx, map[int]int64{0: 3})
	n := len(fs.Requests())
	mustWait(t, e, PublishRequest{Key: key, Body: pidf("a2"), Flag: FlagRPCPublish})
	checkPublish(t, fs.Requests()[n], wire{ifMatch: "e-other", body: string(pidf("a2")), expires: "3600"})
}
