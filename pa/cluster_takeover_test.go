package pa_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/dbtest"
	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/pa"
	"github.com/puaside/puaside/pua"
	"github.com/puaside/puaside/store"
)

// flakyStore fails LoadPresence while failLoad is set, and holds the
// first ApplyPresence writing a publication of holdURI until released.
type flakyStore struct {
	*store.DB
	failLoad atomic.Bool

	mu      sync.Mutex
	holdURI string
	held    chan struct{} // closed once the held write is waiting
	release chan struct{}
	written chan struct{} // closed once the held write is done
}

func (f *flakyStore) LoadPresence(ctx context.Context) ([]pa.PublicationRecord, []pa.WatcherRecord, error) {
	if f.failLoad.Load() {
		return nil, nil, errors.New("load refused by the test")
	}
	return f.DB.LoadPresence(ctx)
}

func (f *flakyStore) ApplyPresence(ctx context.Context, b pa.Batch) error {
	f.mu.Lock()
	hold := false
	if f.holdURI != "" {
		for _, r := range b.Publications {
			if r.PresURI == f.holdURI {
				hold = true
			}
		}
	}
	var release chan struct{}
	if hold {
		f.holdURI = ""
		close(f.held)
		release = f.release
	}
	f.mu.Unlock()
	if release == nil {
		return f.DB.ApplyPresence(ctx, b)
	}
	<-release
	defer close(f.written)
	return f.DB.ApplyPresence(ctx, b)
}

// flip changes aor's state at n until w got want NOTIFYs in all, one per
// change.
func flip(t *testing.T, n *clusterNode, aor string, w *sipphone.Watcher, want int) {
	t.Helper()
	for got := len(w.Notifications()); got < want; got++ {
		basic := "open"
		if got%2 == 1 {
			basic = "closed"
		}
		publishAll(t, aor, basic, n)
		eventually(t, fmt.Sprintf("NOTIFY %d", got+1), func() bool { return len(w.Notifications()) > got })
	}
}

// A successor that cannot read the stored subscriptions at a takeover
// does not notify with the CSeqs it knows from the change log (the old
// owner's reservations are only in the rows): the shard waits until the
// load succeeds, and its first NOTIFY is above every CSeq the old owner
// used.
func TestClusterTakeoverWaitsForStoredReservations(t *testing.T) {
	ctx := context.Background()
	db := dbtest.Open(t, store.SQLite)
	if err := db.EnsureShards(ctx, testShards); err != nil {
		t.Fatal(err)
	}
	fb := &flakyStore{DB: db}
	a, b := startNode(t, db, "a"), startNodeWith(t, fb, db, "b", 20*time.Millisecond)
	epA := take(t, db, a, "a", 0)
	take(t, db, b, "b", 1)
	pA := aorIn(0)
	publishAll(t, pA, "open", a, b)
	phone := sipphone.NewPhone(t, "watcher", "example.com")
	w, err := phone.Watch(ctx, a.addr, parseURI(pA), "presence", sipphone.WatchOptions{Expires: 600})
	if err != nil {
		t.Fatal(err)
	}
	waitBody(t, w, "first NOTIFY", "<basic>open</basic>")
	// Past the CSeq block the SUBSCRIBE reserved: A reserves further.
	flip(t, a, pA, w, 70)
	eventually(t, "B knows the subscription (warm)", func() bool { return len(b.s.Watchers()) == 1 })
	eventually(t, "A's reservation stored", func() bool {
		_, subs, err := db.LoadPresence(ctx)
		return err == nil && len(subs) == 1 && subs[0].LocalCSeq > 70
	})
	last := w.Notifications()[len(w.Notifications())-1]
	stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_ = a.s.Stop(stopCtx)
	cancel()
	if err := db.ReleaseLease(ctx, 0, "a", epA); err != nil {
		t.Fatal(err)
	}
	fb.failLoad.Store(true)
	take(t, db, b, "b", 0)
	flipped := "closed"
	if strings.Contains(last.Body, "<basic>closed</basic>") {
		flipped = "open"
	}
	publishAll(t, pA, flipped, b)
	time.Sleep(300 * time.Millisecond)
	if got := len(w.Notifications()); got != 70 {
		n := w.Notifications()[got-1]
		t.Fatalf("the successor notified (%d NOTIFYs, last CSeq %d from %s, B is %s) before it read the stored reservations",
			got, n.CSeq, n.Source, b.addr)
	}
	fb.failLoad.Store(false)
	eventually(t, "notified once the load succeeds", func() bool { return len(w.Notifications()) > 70 })
	n := w.Notifications()[70]
	if !strings.Contains(n.Body, "<basic>"+flipped+"</basic>") {
		t.Errorf("successor's NOTIFY %q, want %s", n.Body, flipped)
	}
	if n.Source != b.addr || n.Tag != last.Tag || n.CSeq <= last.CSeq {
		t.Errorf("successor's NOTIFY from %s tag %q CSeq %d; want from B, tag %q, CSeq above %d",
			n.Source, n.Tag, n.CSeq, last.Tag, last.CSeq)
	}
}

// A flush of a shard handed over does not overtake the writer's flush in
// flight: the removal of a publication queued after its write is
// committed after it (the row does not come back).
func TestClusterFlushesInOrder(t *testing.T) {
	ctx := context.Background()
	db := dbtest.Open(t, store.SQLite)
	if err := db.EnsureShards(ctx, testShards); err != nil {
		t.Fatal(err)
	}
	pA := aorIn(0)
	fa := &flakyStore{DB: db, holdURI: pA, held: make(chan struct{}), release: make(chan struct{}), written: make(chan struct{})}
	a := startNodeWith(t, fa, db, "a", 20*time.Millisecond)
	take(t, db, a, "a", 0)
	publishAll(t, pA, "open", a)
	<-fa.held // the writer is in the store with the publication
	key := pua.Key{PresURI: pA, Event: "presence", ID: "usrloc"}
	if err := a.s.Remove(key); err != nil {
		t.Fatal(err)
	}
	lost := make(chan struct{})
	go func() {
		a.s.ShardLost(ctx, 0)
		close(lost)
	}()
	time.Sleep(200 * time.Millisecond) // the hand-over's flush has had its chance
	close(fa.release)
	<-lost
	<-fa.written
	pubs, _, err := db.LoadPresence(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(pubs) != 0 {
		t.Fatalf("publication removed in memory stored again (%d rows)", len(pubs))
	}
}

// An owner whose lease was taken meanwhile (paused past it) does not send
// the NOTIFY whose CSeq reservation the store refused; the NOTIFYs within
// the block reserved before go out.
func TestClusterRefusedReservationNotSent(t *testing.T) {
	ctx := context.Background()
	db := dbtest.Open(t, store.SQLite)
	if err := db.EnsureShards(ctx, testShards); err != nil {
		t.Fatal(err)
	}
	a := startNode(t, db, "a")
	epA := take(t, db, a, "a", 0)
	pA := aorIn(0)
	publishAll(t, pA, "open", a)
	phone := sipphone.NewPhone(t, "watcher", "example.com")
	w, err := phone.Watch(ctx, a.addr, parseURI(pA), "presence", sipphone.WatchOptions{Expires: 600})
	if err != nil {
		t.Fatal(err)
	}
	waitBody(t, w, "first NOTIFY", "<basic>open</basic>")
	// Another instance takes the shard; A does not know yet.
	if err := db.ReleaseLease(ctx, 0, "a", epA); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := db.TakeLease(ctx, 0, "b", time.Minute); err != nil || !ok {
		t.Fatal(ok, err)
	}
	flip(t, a, pA, w, 63) // CSeq 1..63: the block the SUBSCRIBE stored
	for range 3 {
		publishAll(t, pA, "open", a)
		publishAll(t, pA, "closed", a)
	}
	time.Sleep(300 * time.Millisecond)
	for _, n := range w.Notifications() {
		if n.CSeq >= 64 {
			t.Fatalf("NOTIFY CSeq %d sent though its reservation was refused", n.CSeq)
		}
	}
}

// The rows of a shard that expired while no instance notified for it are
// removed by the owner that takes the shard.
func TestClusterTakeoverRemovesExpiredRows(t *testing.T) {
	ctx := context.Background()
	db := dbtest.Open(t, store.SQLite)
	if err := db.EnsureShards(ctx, testShards); err != nil {
		t.Fatal(err)
	}
	b := startNodeSync(t, db, "b", time.Hour)
	pA := aorIn(0)
	past := time.Now().Add(-time.Minute).Unix()
	if err := db.ApplyPresence(ctx, pa.Batch{
		Watchers: []pa.WatcherRecord{{PresURI: pA, WatcherURI: "sip:bob@example.com", Event: "presence", CallID: "c1",
			ToTag: "t1", FromTag: "f1", Contact: "sip:bob@10.0.0.2", LocalContact: "sip:pa@127.0.0.1", Expires: past, Status: "active"}},
		Publications: []pa.PublicationRecord{{PresURI: pA, Event: "presence", ID: "p1", ETag: "e1", Expires: past,
			Body: presence(pA, "open")}},
	}); err != nil {
		t.Fatal(err)
	}
	take(t, db, b, "b", 0)
	eventually(t, "expired rows removed", func() bool {
		pubs, subs, err := db.LoadPresence(ctx)
		return err == nil && len(pubs) == 0 && len(subs) == 0
	})
}

// The change log's ids starting again below an instance's cursor (a
// database restored or restarted with the log pruned empty) do not stop
// it: the next subscription made elsewhere is notified by its owner.
func TestClusterChangeLogIDsStartAgain(t *testing.T) {
	for _, backend := range []string{store.SQLite, store.MySQL} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			db := dbtest.Open(t, backend)
			if err := db.EnsureShards(ctx, testShards); err != nil {
				t.Fatal(err)
			}
			a, b := startNode(t, db, "a"), startNode(t, db, "b")
			take(t, db, a, "a", 0)
			take(t, db, b, "b", 1)
			pB := aorIn(1)
			publishAll(t, pB, "open", a, b)
			phone := sipphone.NewPhone(t, "watcher", "example.com")
			for i := range 3 {
				w, err := phone.Watch(ctx, a.addr, parseURI(pB), "presence", sipphone.WatchOptions{Expires: 600})
				if err != nil {
					t.Fatal(err)
				}
				waitBody(t, w, fmt.Sprintf("watcher %d notified by B", i), "<basic>open</basic>")
			}
			reset := []string{`DELETE FROM puaside_pa_changes`, `DELETE FROM sqlite_sequence WHERE name = 'puaside_pa_changes'`}
			if backend == store.MySQL {
				reset = []string{`TRUNCATE TABLE puaside_pa_changes`}
			}
			for _, q := range reset {
				if _, err := db.X.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			w, err := phone.Watch(ctx, a.addr, parseURI(pB), "presence", sipphone.WatchOptions{Expires: 600})
			if err != nil {
				t.Fatal(err)
			}
			waitBody(t, w, "a watcher subscribed after the ids started again notified by B", "<basic>open</basic>")
		})
	}
}

// cluster_sync_period has a floor: a tiny period would be a busy loop on
// the database.
func TestClusterSyncPeriodFloor(t *testing.T) {
	cfg := pa.DefaultConfig()
	cfg.ClusterSyncPeriod = time.Nanosecond
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "cluster_sync_period") {
		t.Fatalf("cluster_sync_period 1ns: %v, want an error", err)
	}
	cfg.ClusterSyncPeriod = pa.MinClusterSyncPeriod
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}
