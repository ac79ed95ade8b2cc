package pa_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/internal/dbtest"
	"github.com/puaside/puaside/internal/freeport"
	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/pa"
	"github.com/puaside/puaside/pidf"
	"github.com/puaside/puaside/pua"
	"github.com/puaside/puaside/shard"
	"github.com/puaside/puaside/store"
)

const testShards = 2

// fakeOwnership is an instance's shard leases, taken in the real lease
// table (the store fences with its epochs) and handed over by the test.
type fakeOwnership struct {
	mu   sync.Mutex
	held map[int]int64
}

func (o *fakeOwnership) Owns(presURI string) bool {
	_, _, ok := o.Fence(presURI)
	return ok
}

func (o *fakeOwnership) Fence(presURI string) (int, int64, bool) {
	sh := shard.Of(presURI, testShards)
	o.mu.Lock()
	defer o.mu.Unlock()
	ep, ok := o.held[sh]
	return sh, ep, ok
}

func (o *fakeOwnership) set(sh int, ep int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if ep == 0 {
		delete(o.held, sh)
	} else {
		o.held[sh] = ep
	}
}

// clusterNode is one presence server of the cluster tests.
type clusterNode struct {
	s    *pa.Server
	own  *fakeOwnership
	addr string
}

func startNode(t *testing.T, db *store.DB, id string) *clusterNode {
	return startNodeSync(t, db, id, 20*time.Millisecond)
}

func startNodeSync(t *testing.T, db *store.DB, id string, sync time.Duration) *clusterNode {
	t.Helper()
	return startNodeWith(t, db, db, id, sync)
}

// startNodeWith starts a node whose pa writes and loads through st.
func startNodeWith(t *testing.T, st pa.Store, db *store.DB, id string, sync time.Duration) *clusterNode {
	t.Helper()
	port, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	cfg := pa.DefaultConfig()
	cfg.Listen = []string{fmt.Sprintf("udp:127.0.0.1:%d", port), fmt.Sprintf("tcp:127.0.0.1:%d", port)}
	cfg.ClusterSyncPeriod = sync
	own := &fakeOwnership{held: map[int]int64{}}
	s, err := pa.New(cfg, pa.Options{Store: st, Cluster: &pa.Cluster{Ownership: own, Changes: db, Instance: id}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	})
	return &clusterNode{s: s, own: own, addr: fmt.Sprintf("127.0.0.1:%d", port)}
}

// take gives shard sh to n in the lease table and tells n's server.
func take(t *testing.T, db *store.DB, n *clusterNode, id string, sh int) int64 {
	t.Helper()
	ctx := context.Background()
	ep, ok, err := db.TakeLease(ctx, sh, id, time.Minute)
	if err != nil || !ok {
		t.Fatalf("take shard %d for %s: %v %v", sh, id, ok, err)
	}
	n.own.set(sh, ep)
	n.s.ShardsGained(ctx, map[int]int64{sh: ep})
	return ep
}

// aorIn returns an AoR of shard sh.
func aorIn(sh int) string {
	for i := 0; ; i++ {
		u := fmt.Sprintf("sip:user%d@example.com", i)
		if shard.Of(u, testShards) == sh {
			return u
		}
	}
}

func presence(entity, basic string) []byte {
	return pidf.Build(pidf.Document{Entity: entity, Tuples: []pidf.Tuple{{ID: "t", Basic: basic, Priority: -1}}})
}

// publishAll publishes into every node, as every instance's trackers do.
func publishAll(t *testing.T, aor, basic string, ns ...*clusterNode) {
	t.Helper()
	for _, n := range ns {
		if err := n.s.Publish(pua.PublishRequest{Key: pua.Key{PresURI: aor, Event: "presence", ID: "usrloc"},
			Body: presence(aor, basic), Flag: pua.FlagUsrloc}); err != nil {
			t.Fatal(err)
		}
	}
}

func waitBody(t *testing.T, w *sipphone.Watcher, what, want string) sipphone.Notification {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := w.WaitNotify(ctx, func(n sipphone.Notification) bool { return strings.Contains(n.Body, want) })
	if err != nil {
		t.Fatalf("%s: %v; got %+v", what, err, w.Notifications())
	}
	return n
}

func parseURI(s string) sip.Uri {
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		panic(err)
	}
	return u
}

// bodies lists the basic states of the NOTIFYs received.
func bodies(w *sipphone.Watcher) []string {
	var out []string
	for _, n := range w.Notifications() {
		switch {
		case n.Terminated():
			out = append(out, "terminated")
		case strings.Contains(n.Body, "<basic>open</basic>"):
			out = append(out, "open")
		default:
			out = append(out, "closed")
		}
	}
	return out
}

// Two presence servers on one database, each owning one shard: a watcher
// subscribes at A to a presentity of B's shard and to one of A's. Each is
// notified by its owner only, once per change, wherever the SUBSCRIBE,
// refresh or unsubscribe arrived; after A's shard is taken over by B, the
// watcher of A's presentity gets the next change from B in the same dialog
// (same tags, higher CSeq), and no NOTIFY for the unchanged state at the
// takeover.
func TestClusterOwnerNotifies(t *testing.T) {
	for _, backend := range []string{store.SQLite, store.MySQL} {
		t.Run(backend, func(t *testing.T) { testClusterOwnerNotifies(t, backend) })
	}
}

func testClusterOwnerNotifies(t *testing.T, backend string) {
	ctx := context.Background()
	url := dbtest.URL(t, backend)
	open := func() *store.DB {
		db, err := store.Open(ctx, url, "pua")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	dbA := open()
	if _, err := dbA.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	dbB := dbA
	if backend == store.MySQL {
		dbB = open() // SQLite serves one host: one handle for both
	}
	if err := dbA.EnsureShards(ctx, testShards); err != nil {
		t.Fatal(err)
	}
	a, b := startNode(t, dbA, "a"), startNode(t, dbB, "b")
	epA := take(t, dbA, a, "a", 0)
	take(t, dbB, b, "b", 1)
	pA, pB := aorIn(0), aorIn(1)
	publishAll(t, pA, "open", a, b)
	publishAll(t, pB, "open", a, b)

	phone := sipphone.NewPhone(t, "watcher", "example.com")
	wB, err := phone.Watch(ctx, a.addr, parseURI(pB), "presence", sipphone.WatchOptions{Expires: 600})
	if err != nil {
		t.Fatal(err)
	}
	wA, err := phone.Watch(ctx, a.addr, parseURI(pA), "presence", sipphone.WatchOptions{Expires: 600})
	if err != nil {
		t.Fatal(err)
	}
	nB := waitBody(t, wB, "B's presentity, subscribed at A, notified", "<basic>open</basic>")
	if nB.Source != b.addr {
		t.Errorf("the NOTIFY for B's presentity came from %s, want the owner B at %s", nB.Source, b.addr)
	}
	nA := waitBody(t, wA, "A's presentity notified", "<basic>open</basic>")
	if nA.Source != a.addr {
		t.Errorf("the NOTIFY for A's presentity came from %s, want A at %s", nA.Source, a.addr)
	}
	// B knows the subscription made at A, A and B the publications.
	eventually(t, "B holds both subscriptions made at A (warm)", func() bool { return len(b.s.Watchers()) == 2 })

	publishAll(t, pB, "closed", a, b)
	waitBody(t, wB, "B's presentity closed", "<basic>closed</basic>")

	// A refresh of B's dialog at A: answered there, the NOTIFY from B.
	res, err := wB.Refresh(ctx, 600)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("refresh at A: %v %v", res, err)
	}
	nB = waitBody(t, wB, "the NOTIFY after the refresh", "<basic>closed</basic>")
	if nB.Source != b.addr {
		t.Errorf("the NOTIFY after a refresh at A came from %s, want B", nB.Source)
	}

	// Unsubscribe at A of B's dialog: the final NOTIFY from B.
	if err := wB.Unsubscribe(ctx); err != nil {
		t.Fatal(err)
	}
	waitTerminated(t, wB)

	// A dies (once its digest of what it notified is stored); B takes its
	// shard over with a new epoch.
	eventually(t, "A's digest of what it notified stored", func() bool {
		_, subs, err := dbA.LoadPresence(ctx)
		return err == nil && len(subs) == 1 && subs[0].PresURI == pA && subs[0].Notified != 0
	})
	last := wA.Notifications()[len(wA.Notifications())-1]
	stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_ = a.s.Stop(stopCtx)
	cancel()
	if err := dbA.ReleaseLease(ctx, 0, "a", epA); err != nil {
		t.Fatal(err)
	}
	take(t, dbB, b, "b", 0)
	publishAll(t, pA, "closed", b)
	nA = waitBody(t, wA, "A's presentity closed by the successor", "<basic>closed</basic>")
	if nA.Source != b.addr || nA.Tag != last.Tag || nA.CSeq <= last.CSeq {
		t.Errorf("successor's NOTIFY from %s tag %q CSeq %d; want from B, tag %q, CSeq above %d",
			nA.Source, nA.Tag, nA.CSeq, last.Tag, last.CSeq)
	}
	// The dialog made at A is refreshed and ended at B.
	wA.SetServer(b.addr)
	if res, err := wA.Refresh(ctx, 600); err != nil || res.StatusCode != 200 {
		t.Fatalf("refresh at B of a dialog made at A: %v %v", res, err)
	}
	waitBody(t, wA, "the NOTIFY after the refresh at B", "<basic>closed</basic>")
	if err := wA.Unsubscribe(ctx); err != nil {
		t.Fatal(err)
	}
	waitTerminated(t, wA)
	if got, want := strings.Join(bodies(wA), " "), "open closed closed terminated"; got != want {
		t.Errorf("A's presentity's watcher got %q, want %q (one NOTIFY per change and refresh)", got, want)
	}
	if got, want := strings.Join(bodies(wB), " "), "open closed closed terminated"; got != want {
		t.Errorf("B's presentity's watcher got %q, want %q (one NOTIFY per change and refresh)", got, want)
	}
	eventually(t, "no subscription left at B", func() bool { return len(b.s.Watchers()) == 0 })
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitTerminated(t *testing.T, w *sipphone.Watcher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := w.WaitNotify(ctx, func(n sipphone.Notification) bool { return n.Terminated() }); err != nil {
		t.Fatalf("no final NOTIFY: %v; got %+v", err, w.Notifications())
	}
}

// A takeover does not depend on the change log alone: with its entries
// pruned before the successor read them, the successor loads the shard's
// stored subscriptions and notifies the next change in the same dialog.
func TestClusterTakeoverWithoutChangeLog(t *testing.T) {
	ctx := context.Background()
	db := dbtest.Open(t, store.SQLite)
	if err := db.EnsureShards(ctx, testShards); err != nil {
		t.Fatal(err)
	}
	a := startNode(t, db, "a")
	b := startNodeSync(t, db, "b", time.Hour) // reads the log at the takeover only
	epA := take(t, db, a, "a", 0)
	take(t, db, b, "b", 1)
	pA := aorIn(0)
	publishAll(t, pA, "open", a, b)
	phone := sipphone.NewPhone(t, "watcher", "example.com")
	w, err := phone.Watch(ctx, a.addr, parseURI(pA), "presence", sipphone.WatchOptions{Expires: 600})
	if err != nil {
		t.Fatal(err)
	}
	first := waitBody(t, w, "notified by A", "<basic>open</basic>")
	eventually(t, "A's digest of what it notified stored", func() bool {
		_, subs, err := db.LoadPresence(ctx)
		return err == nil && len(subs) == 1 && subs[0].Notified != 0
	})
	stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_ = a.s.Stop(stopCtx)
	cancel()
	if _, err := db.X.ExecContext(ctx, `DELETE FROM puaside_pa_changes`); err != nil {
		t.Fatal(err)
	}
	if len(b.s.Watchers()) != 0 {
		t.Fatal("B read the change log before the takeover")
	}
	if err := db.ReleaseLease(ctx, 0, "a", epA); err != nil {
		t.Fatal(err)
	}
	take(t, db, b, "b", 0)
	publishAll(t, pA, "closed", b)
	n := waitBody(t, w, "closed by the successor", "<basic>closed</basic>")
	if n.Source != b.addr || n.Tag != first.Tag || n.CSeq <= first.CSeq {
		t.Errorf("successor's NOTIFY from %s tag %q CSeq %d; want from B, tag %q, CSeq above %d",
			n.Source, n.Tag, n.CSeq, first.Tag, first.CSeq)
	}
	if got, want := strings.Join(bodies(w), " "), "open closed"; got != want {
		t.Errorf("NOTIFYs %q, want %q", got, want)
	}
}
