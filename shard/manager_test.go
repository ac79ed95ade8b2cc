package shard

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/puaside/puaside/clock/clocktest"
	"github.com/puaside/puaside/internal/dbtest"
	"github.com/puaside/puaside/store"
)

// events records a listener's calls.
type events struct {
	mu     sync.Mutex
	gained map[int]int64
	lost   []int
}

func (e *events) ShardsGained(_ context.Context, g map[int]int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gained == nil {
		e.gained = map[int]int64{}
	}
	for s, ep := range g {
		e.gained[s] = ep
	}
}

func (e *events) ShardLost(_ context.Context, s int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lost = append(e.lost, s)
}

func newManager(t *testing.T, db *store.DB, id string, ttl time.Duration, shards int, o Options) *Manager {
	t.Helper()
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Seed == 0 {
		o.Seed = uint64(len(id)*7919 + int(id[len(id)-1]))
	}
	m, err := New(Config{InstanceID: id, TTL: ttl, Shards: shards}, db, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.db.EnsureShards(context.Background(), shards); err != nil {
		t.Fatal(err)
	}
	return m
}

// owners checks no shard is held by two managers and returns shard -> owner.
func owners(t *testing.T, ms ...*Manager) map[int]string {
	t.Helper()
	out := map[int]string{}
	for _, m := range ms {
		for _, h := range m.Owned() {
			if o, dup := out[h.Shard]; dup {
				t.Fatalf("shard %d held by %s and %s", h.Shard, o, m.cfg.InstanceID)
			}
			out[h.Shard] = m.cfg.InstanceID
		}
	}
	return out
}

func rounds(t *testing.T, n int, ms ...*Manager) {
	t.Helper()
	for range n {
		for _, m := range ms {
			if err := m.round(context.Background()); err != nil {
				t.Fatalf("%s: %v", m.cfg.InstanceID, err)
			}
		}
	}
}

func TestOfSpreadsAndIsStable(t *testing.T) {
	counts := make([]int, 8)
	for i := range 8000 {
		s := Of(fmt.Sprintf("sip:user%d@example.com", i), 8)
		if s != Of(fmt.Sprintf("sip:user%d@example.com", i), 8) {
			t.Fatal("Of is not stable")
		}
		counts[s]++
	}
	for s, c := range counts {
		if c < 800 || c > 1200 {
			t.Fatalf("shard %d got %d of 8000: %v", s, c, counts)
		}
	}
	if Of("sip:a@x", 1) != 0 || Of("sip:a@x", 0) != 0 {
		t.Fatal("one shard must be shard 0")
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for _, c := range []Config{{TTL: time.Second, Shards: 1}, {InstanceID: "a", TTL: time.Millisecond, Shards: 1},
		{InstanceID: "a", TTL: time.Second, Shards: 0}} {
		if _, err := New(c, nil, Options{}); err == nil {
			t.Fatalf("New(%+v) accepted", c)
		}
	}
}

// TestThreeInstancesShareAndTakeOver: three instances split the shards in
// fair shares with each shard held once; when one stops renewing (killed),
// the others take its shards over once its leases end, with new epochs,
// and the dead one, resumed, finds them lost.
func TestThreeInstancesShareAndTakeOver(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		const ttl = time.Second
		var ev [3]events
		var ms []*Manager
		for i, id := range []string{"a", "b", "c"} {
			ms = append(ms, newManager(t, db, id, ttl, 12, Options{Listener: &ev[i]}))
		}
		// Heartbeats first, so that every instance sees three live ones.
		for _, m := range ms {
			if err := m.db.Heartbeat(context.Background(), m.cfg.InstanceID, ttl); err != nil {
				t.Fatal(err)
			}
		}
		rounds(t, 2, ms...)
		own := owners(t, ms...)
		if len(own) != 12 {
			t.Fatalf("%d shards held, want 12: %v", len(own), own)
		}
		for _, m := range ms {
			if n := len(m.Owned()); n != 4 {
				t.Fatalf("%s holds %d shards, want its fair share 4", m.cfg.InstanceID, n)
			}
		}
		deadC := ms[2].Owned()
		// c is killed: no more rounds. Its leases end within ttl.
		deadline := time.Now().Add(5 * time.Second)
		for len(owners(t, ms[0], ms[1])) < 12 {
			if time.Now().After(deadline) {
				t.Fatalf("c's shards not taken over in 5s: %v", owners(t, ms[0], ms[1]))
			}
			time.Sleep(ttl / 3)
			rounds(t, 1, ms[0], ms[1])
		}
		for _, m := range ms[:2] {
			if n := len(m.Owned()); n != 6 {
				t.Fatalf("%s holds %d shards, want 6", m.cfg.InstanceID, n)
			}
		}
		for _, h := range deadC {
			var ep int64
			var found bool
			for i := range 2 {
				ev[i].mu.Lock()
				if e, ok := ev[i].gained[h.Shard]; ok {
					ep, found = e, true
				}
				ev[i].mu.Unlock()
			}
			if !found || ep != h.Epoch+1 {
				t.Fatalf("shard %d (epoch %d) taken over at epoch %d (found %v), want %d", h.Shard, h.Epoch, ep, found, h.Epoch+1)
			}
		}
		// c resumes: every shard is lost to it and it sends for none.
		if err := ms[2].round(context.Background()); err != nil {
			t.Fatal(err)
		}
		ev[2].mu.Lock()
		lost := len(ev[2].lost)
		ev[2].mu.Unlock()
		if lost != 4 {
			t.Fatalf("resumed c heard of %d lost shards, want 4", lost)
		}
		for _, h := range deadC {
			if _, ok := ms[2].OwnsShard(h.Shard); ok {
				t.Fatalf("resumed c still owns shard %d", h.Shard)
			}
		}
		owners(t, ms...)
	})
}

// TestJoinAndCleanStopRebalance: a second instance joining takes shards
// only as the first releases its excess, gradually; a clean stop releases
// every lease at once to the survivor.
func TestJoinAndCleanStopRebalance(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		const ttl = 30 * time.Second
		var evA events
		a := newManager(t, db, "a", ttl, 8, Options{Listener: &evA})
		rounds(t, 1, a)
		if n := len(a.Owned()); n != 8 {
			t.Fatalf("alone, a holds %d of 8", n)
		}
		b := newManager(t, db, "b", ttl, 8, Options{})
		rounds(t, 1, b) // b is live now; nothing is free
		if n := len(b.Owned()); n != 0 {
			t.Fatalf("b took %d held shards", n)
		}
		rounds(t, 1, a)
		moved := 8 - len(a.Owned())
		if moved < 1 || moved > 2 {
			t.Fatalf("a released %d shards in one round, want 1 or 2 (half its excess)", moved)
		}
		rounds(t, 4, a, b)
		if len(a.Owned()) != 4 || len(b.Owned()) != 4 {
			t.Fatalf("a %d b %d, want 4 each", len(a.Owned()), len(b.Owned()))
		}
		owners(t, a, b)
		evA.mu.Lock()
		if len(evA.lost) != 4 {
			t.Fatalf("a heard of %d released shards, want 4", len(evA.lost))
		}
		evA.mu.Unlock()

		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { a.Run(ctx); close(done) }()
		cancel()
		<-done
		if n := len(a.Owned()); n != 0 {
			t.Fatalf("a holds %d after stop", n)
		}
		rounds(t, 1, b)
		if n := len(b.Owned()); n != 8 {
			t.Fatalf("after a's clean stop b holds %d, want 8 at once", n)
		}
	})
}

// TestOwnerStopsBeforeLeaseEnds: ownership ends a guard before the lease
// by the local clock alone, with no database round, and the fence stays.
func TestOwnerStopsBeforeLeaseEnds(t *testing.T) {
	db := dbtest.Open(t, store.SQLite)
	clk := clocktest.New(time.Unix(1_700_000_000, 0))
	m := newManager(t, db, "a", 4*time.Second, 1, Options{Clock: clk})
	if err := m.round(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !m.Owns("sip:alice@x") {
		t.Fatal("not owner after taking the only shard")
	}
	if err := m.Healthy(); err != nil {
		t.Fatalf("healthy: %v", err)
	}
	clk.Advance(2900 * time.Millisecond)
	if !m.Owns("sip:alice@x") {
		t.Fatal("owner stopped before lease - guard")
	}
	clk.Advance(100 * time.Millisecond)
	if m.Owns("sip:alice@x") {
		t.Fatal("still owner at lease - guard (3s of 4s)")
	}
	if err := m.Healthy(); err == nil {
		t.Fatal("healthy with leases not renewed for 3s of 4s")
	}
	if s, ep, ok := m.Fence("sip:alice@x"); !ok || s != 0 || ep != 1 {
		t.Fatalf("fence %d %d %v, want 0 1 true", s, ep, ok)
	}
	if _, _, ok := newManager(t, db, "b", 4*time.Second, 1, Options{}).Fence("sip:alice@x"); ok {
		t.Fatal("fence of a shard never held")
	}
	// The next round renews the lease (still held on the database clock):
	// sending resumes and the listener hears of it.
	var ev events
	m.SetListener(&ev)
	if err := m.round(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !m.Owns("sip:alice@x") {
		t.Fatal("not owner after a late renewal of a held lease")
	}
	if ep, ok := ev.gained[0]; !ok || ep != 1 {
		t.Fatalf("listener not told of the resumed shard: %v", ev.gained)
	}
}

// BenchmarkRound is one lease round (heartbeat, renewal of every lease
// held, rebalance check) of one instance holding its fair share (22) of 64
// shards among three live instances: the database load the leases add,
// per round (each instance runs four rounds per lease_ttl).
func BenchmarkRound(b *testing.B) {
	for _, backend := range []string{store.SQLite, store.MySQL} {
		b.Run(backend, func(b *testing.B) {
			db := dbtest.Open(b, backend)
			ctx := context.Background()
			m, err := New(Config{InstanceID: "a", TTL: time.Minute, Shards: 64}, db, Options{Log: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			if err := db.EnsureShards(ctx, 64); err != nil {
				b.Fatal(err)
			}
			if err := m.round(ctx); err != nil {
				b.Fatal(err)
			}
			for _, id := range []string{"b", "c"} {
				if err := db.Heartbeat(ctx, id, time.Hour); err != nil {
					b.Fatal(err)
				}
			}
			for range 10 { // down to its fair share, 22
				if err := m.round(ctx); err != nil {
					b.Fatal(err)
				}
			}
			if n := len(m.Owned()); n != 22 {
				b.Fatalf("holds %d shards, want 22", n)
			}
			b.ResetTimer()
			for b.Loop() {
				if err := m.round(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestLapseCatchesUpBeforeTakingShards: an instance whose rounds stopped
// for longer than lease_ttl (paused) drops its shards and, with no
// heartbeat (the others do not count it, its tracker writes are fenced),
// runs its catch-up before it beats and takes shards again; rounds on time
// run none.
func TestLapseCatchesUpBeforeTakingShards(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		const ttl = time.Second
		var evA events
		a := newManager(t, db, "a", ttl, 4, Options{Listener: &evA})
		b := newManager(t, db, "b", ttl, 4, Options{})
		type call struct {
			asOf, at time.Time
			live     []store.Instance
			held     int
		}
		var calls []call
		a.SetCatchUp(300*time.Millisecond, func(ctx context.Context, asOf time.Time) {
			is, err := db.Instances(ctx)
			if err != nil {
				t.Error(err)
			}
			calls = append(calls, call{asOf: asOf, at: time.Now(), live: is, held: len(a.Owned())})
		})
		for _, m := range []*Manager{a, b} {
			if err := m.db.Heartbeat(ctx, m.cfg.InstanceID, ttl); err != nil {
				t.Fatal(err)
			}
		}
		rounds(t, 3, a, b)
		if n := len(a.Owned()); n != 2 || len(calls) != 0 {
			t.Fatalf("a holds %d shards after rounds on time, catch-ups %d; want 2 and none", n, len(calls))
		}
		// a pauses past its lease; b takes every shard.
		deadline := time.Now().Add(5 * time.Second)
		for len(b.Owned()) < 4 {
			if time.Now().After(deadline) {
				t.Fatalf("b holds %d shards 5s into a's pause", len(b.Owned()))
			}
			time.Sleep(ttl / 4)
			rounds(t, 1, b)
		}
		time.Sleep(ttl / 4)
		resumed := time.Now()
		if err := a.round(ctx); err != nil {
			t.Fatal(err)
		}
		if len(calls) != 1 {
			t.Fatalf("%d catch-ups after the lapse, want 1", len(calls))
		}
		c := calls[0]
		if c.held != 0 {
			t.Errorf("a held %d shards during its catch-up, want none", c.held)
		}
		for _, i := range c.live {
			if i.ID == "a" {
				t.Errorf("a's heartbeat live during its catch-up: %+v", c.live)
			}
		}
		if d := c.at.Sub(resumed); d < 300*time.Millisecond {
			t.Errorf("catch-up %s after resuming, want after the 300ms wait", d)
		}
		if d := c.asOf.Sub(resumed); d < 400*time.Millisecond || d > 700*time.Millisecond {
			t.Errorf("catch-up as of %s after resuming, want half a second", d)
		}
		evA.mu.Lock()
		lost := len(evA.lost)
		evA.mu.Unlock()
		if lost != 2 {
			t.Errorf("a heard of %d lost shards, want 2", lost)
		}
		rounds(t, 4, b, a)
		if n := len(a.Owned()); n != 2 || len(calls) != 1 {
			t.Errorf("after rounds on time again a holds %d shards with %d catch-ups, want 2 and 1", n, len(calls))
		}
		owners(t, a, b)
	})
}
