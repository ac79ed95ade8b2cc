package store_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/dbtest"
	"github.com/puaside/puaside/pa"
	"github.com/puaside/puaside/store"
)

func TestPresenceTables(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		pub := pa.PublicationRecord{PresURI: "sip:alice@example.com", Event: "presence", ID: "usrloc",
			Received: 100, Seq: 3, Body: []byte("<presence/>"), Sender: "", Flag: 1}
		ext := pa.PublicationRecord{PresURI: "sip:alice@example.com", Event: "presence", ID: "x1", ETag: "e1",
			Expires: 2_000_000_000, Received: 101, Seq: 4, Body: []byte("<presence>x</presence>"), Sender: "sip:phone@h"}
		w := pa.WatcherRecord{PresURI: "sip:alice@example.com", WatcherURI: "sip:bob@example.com", Event: "dialog;sla", EventID: "7",
			CallID: "c1", ToTag: "t1", FromTag: "f1", LocalCSeq: 64, RemoteCSeq: 2, Contact: "sip:bob@10.0.0.2:5060",
			RouteSet: []string{"sip:p1;lr", "sip:p2;lr"}, LocalContact: "sip:pa@127.0.0.1:5065", Expires: 2_000_000_000,
			Status: "pending", Version: 64, UserAgent: "phone"}
		if err := db.ApplyPresence(ctx, pa.Batch{Publications: []pa.PublicationRecord{pub, ext}, Watchers: []pa.WatcherRecord{w}}); err != nil {
			t.Fatal(err)
		}
		// Writing again replaces the rows.
		w.LocalCSeq, w.Status = 128, "active"
		ext.ETag, ext.Body = "e2", []byte("<presence>y</presence>")
		if err := db.ApplyPresence(ctx, pa.Batch{Publications: []pa.PublicationRecord{ext}, Watchers: []pa.WatcherRecord{w}}); err != nil {
			t.Fatal(err)
		}
		pubs, subs, err := db.LoadPresence(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(pubs, []pa.PublicationRecord{pub, ext}) {
			t.Fatalf("publications %+v", pubs)
		}
		if !reflect.DeepEqual(subs, []pa.WatcherRecord{w}) {
			t.Fatalf("subscriptions %+v\nwant %+v", subs, w)
		}
		var status int
		if err := db.X.GetContext(ctx, &status, `SELECT status FROM watchers WHERE watcher_username = 'bob'`); err != nil || status != 1 {
			t.Fatalf("watchers status %d, %v", status, err)
		}
		// A user part too long for Kamailio's column is left out, the rest written.
		long := pa.PublicationRecord{PresURI: "sip:" + strings.Repeat("u", 70) + "@example.com", Event: "presence", ID: "u", Body: []byte("x")}
		if err := db.ApplyPresence(ctx, pa.Batch{Publications: []pa.PublicationRecord{long},
			RemovedPublications: []pa.PublicationRecord{pub}, RemovedWatchers: []pa.WatcherRecord{w}}); err != nil {
			t.Fatal(err)
		}
		pubs, subs, err = db.LoadPresence(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(pubs) != 1 || pubs[0].ID != "x1" || len(subs) != 0 {
			t.Fatalf("after removal: %+v %+v", pubs, subs)
		}
		if err := db.X.GetContext(ctx, &status, `SELECT status FROM watchers WHERE watcher_username = 'bob'`); err != nil || status != 3 {
			t.Fatalf("watchers status after removal %d, %v", status, err)
		}
		var versions int
		if err := db.X.GetContext(ctx, &versions, `SELECT COUNT(*) FROM version WHERE table_name IN ('presentity', 'active_watchers', 'watchers')`); err != nil || versions != 3 {
			t.Fatalf("version rows %d, %v", versions, err)
		}
	})
}

// Several instances: an owner's write carrying a stale epoch is refused
// (the rest of the batch written), a subscription's CSeq and version are
// never lowered by another instance's older record, and the change log
// names the rows written with their state now.
func TestPresenceFenceAndChangeLog(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := db.EnsureShards(ctx, 2); err != nil {
			t.Fatal(err)
		}
		old, ok, err := db.TakeLease(ctx, 0, "a", time.Minute)
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		w := pa.WatcherRecord{PresURI: "sip:alice@example.com", WatcherURI: "sip:bob@example.com", Event: "presence",
			CallID: "c1", ToTag: "t1", FromTag: "f1", LocalCSeq: 64, RemoteCSeq: 2, Contact: "sip:bob@10.0.0.2",
			LocalContact: "sip:pa@127.0.0.1", Expires: 2_000_000_000, Status: "active", Version: 64}
		if err := db.ApplyPresence(ctx, pa.Batch{Watchers: []pa.WatcherRecord{w}, Origin: "a"}); err != nil {
			t.Fatal(err)
		}
		// The owner reserves further.
		n := w
		n.LocalCSeq, n.Version, n.Notified, n.Shard, n.Epoch = 128, 128, 42, 0, old
		if err := db.ApplyPresence(ctx, pa.Batch{Notified: []pa.WatcherRecord{n}}); err != nil {
			t.Fatal(err)
		}
		// A refresh at another instance, with the first reservation.
		r := w
		r.RemoteCSeq, r.Expires = 3, 2_000_000_100
		if err := db.ApplyPresence(ctx, pa.Batch{Watchers: []pa.WatcherRecord{r}, Origin: "b"}); err != nil {
			t.Fatal(err)
		}
		// The shard is taken over: the old owner's reservation is refused.
		if err := db.ReleaseLease(ctx, 0, "a", old); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := db.TakeLease(ctx, 0, "b", time.Minute); err != nil || !ok {
			t.Fatal(ok, err)
		}
		stale := n
		stale.LocalCSeq, stale.Notified = 500, 7
		if err := db.ApplyPresence(ctx, pa.Batch{Notified: []pa.WatcherRecord{stale}}); err != nil {
			t.Fatal(err)
		}
		_, subs, err := db.LoadPresence(ctx)
		if err != nil || len(subs) != 1 {
			t.Fatal(subs, err)
		}
		got := subs[0]
		if got.LocalCSeq != 128 || got.Version != 128 || got.Notified != 42 || got.RemoteCSeq != 3 || got.Expires != 2_000_000_100 {
			t.Fatalf("row %+v: want CSeq and version 128 kept, digest 42, the refresh's CSeq 3 and expiry", got)
		}
		last, err := db.LastPresenceChange(ctx)
		if err != nil || last == 0 {
			t.Fatal(last, err)
		}
		cs, err := db.PresenceChanges(ctx, 0, 10)
		if err != nil || len(cs) != 2 || cs[0].Origin != "a" || cs[1].Origin != "b" || !cs[1].Watcher || cs[1].Gone ||
			cs[1].Subscription.RemoteCSeq != 3 {
			t.Fatalf("changes %+v %v", cs, err)
		}
		if err := db.ApplyPresence(ctx, pa.Batch{RemovedWatchers: []pa.WatcherRecord{w}, Origin: "b"}); err != nil {
			t.Fatal(err)
		}
		cs, err = db.PresenceChanges(ctx, last, 10)
		if err != nil || len(cs) != 1 || !cs[0].Gone || cs[0].Subscription.CallID != "c1" {
			t.Fatalf("changes after removal %+v %v", cs, err)
		}
		// A removed row is not brought back by the owner's update.
		if err := db.ApplyPresence(ctx, pa.Batch{Notified: []pa.WatcherRecord{n}}); err != nil {
			t.Fatal(err)
		}
		if _, subs, _ := db.LoadPresence(ctx); len(subs) != 0 {
			t.Fatalf("removed subscription written again: %+v", subs)
		}
		if err := db.PrunePresenceChanges(ctx, time.Now().Unix()+1); err != nil {
			t.Fatal(err)
		}
		if cs, err := db.PresenceChanges(ctx, 0, 10); err != nil || len(cs) != 0 {
			t.Fatalf("after prune %+v %v", cs, err)
		}
	})
}
