package store_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/dbtest"
	"github.com/puaside/puaside/pa"
	"github.com/puaside/puaside/pua"
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
		var se *pua.StaleEpochError
		if err := db.ApplyPresence(ctx, pa.Batch{Notified: []pa.WatcherRecord{stale}}); !errors.As(err, &se) ||
			!reflect.DeepEqual(se.Shards, []int{0}) || se.Refused != 1 {
			t.Fatalf("stale owner's write: %v, want a StaleEpochError for shard 0", err)
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
		cs, err := db.PresenceChanges(ctx, 0, 10, nil)
		if err != nil || len(cs) != 2 || cs[0].Origin != "a" || cs[1].Origin != "b" || !cs[1].Watcher || cs[1].Gone ||
			cs[1].Subscription.RemoteCSeq != 3 {
			t.Fatalf("changes %+v %v", cs, err)
		}
		if err := db.ApplyPresence(ctx, pa.Batch{RemovedWatchers: []pa.WatcherRecord{w}, Origin: "b"}); err != nil {
			t.Fatal(err)
		}
		cs, err = db.PresenceChanges(ctx, last, 10, nil)
		if err != nil || len(cs) != 1 || !cs[0].Gone || cs[0].Subscription.CallID != "c1" {
			t.Fatalf("changes after removal %+v %v", cs, err)
		}
		// A removed row is not brought back by the owner's update.
		n.Epoch = 0
		if err := db.ApplyPresence(ctx, pa.Batch{Notified: []pa.WatcherRecord{n}}); err != nil {
			t.Fatal(err)
		}
		if _, subs, _ := db.LoadPresence(ctx); len(subs) != 0 {
			t.Fatalf("removed subscription written again: %+v", subs)
		}
		// Pruned but the newest: the ids continue above it.
		if err := db.PrunePresenceChanges(ctx, -time.Hour); err != nil {
			t.Fatal(err)
		}
		if cs, err := db.PresenceChanges(ctx, 0, 10, nil); err != nil || len(cs) != 1 || cs[0].ID <= last {
			t.Fatalf("after prune %+v %v, want the newest entry only", cs, err)
		}
	})
}

// Several instances: a subscription or PUBLISH whose keys its table
// cannot hold is left out, and the change log does not name it either,
// so the rest of the batch is written (strict mode refused the whole
// batch when the overlong key went into the change log).
func TestPresenceChangeLogOverlongKey(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		long := strings.Repeat("c", 300)
		ok := pa.WatcherRecord{PresURI: "sip:alice@example.com", WatcherURI: "sip:bob@example.com", Event: "presence",
			CallID: "c1", ToTag: "t1", FromTag: "f1", Contact: "sip:bob@10.0.0.2", LocalContact: "sip:pa@127.0.0.1",
			Expires: 2_000_000_000, Status: "active"}
		bad := ok
		bad.CallID = long
		badPub := pa.PublicationRecord{PresURI: "sip:alice@example.com", Event: "presence", ID: long, ETag: "e1",
			Expires: 2_000_000_000, Body: []byte("<presence/>")}
		err := db.ApplyPresence(ctx, pa.Batch{Watchers: []pa.WatcherRecord{bad, ok}, Publications: []pa.PublicationRecord{badPub},
			RemovedWatchers: []pa.WatcherRecord{{CallID: long, ToTag: "t", FromTag: "f", PresURI: "sip:alice@example.com"}}, Origin: "a"})
		if err != nil {
			t.Fatalf("a batch with overlong keys: %v", err)
		}
		_, subs, err := db.LoadPresence(ctx)
		if err != nil || len(subs) != 1 || subs[0].CallID != "c1" {
			t.Fatalf("subscriptions %+v %v, want c1 only", subs, err)
		}
		cs, err := db.PresenceChanges(ctx, 0, 10, nil)
		if err != nil || len(cs) != 1 || cs[0].Subscription.CallID != "c1" {
			t.Fatalf("changes %+v %v, want c1's only", cs, err)
		}
	})
}

// Several instances: the removal of an expired row deletes it only while
// its stored expiry is not later (a refresh accepted at another instance
// keeps it), and the change log names only what was removed.
func TestPresenceExpiredRemovalConditional(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		w := pa.WatcherRecord{PresURI: "sip:alice@example.com", WatcherURI: "sip:bob@example.com", Event: "presence",
			CallID: "c1", ToTag: "t1", FromTag: "f1", Contact: "sip:bob@10.0.0.2", LocalContact: "sip:pa@127.0.0.1",
			Expires: 2_000_000_100, Status: "active"}
		p := pa.PublicationRecord{PresURI: "sip:alice@example.com", Event: "presence", ID: "p1", ETag: "e1",
			Expires: 2_000_000_100, Body: []byte("<presence/>")}
		if err := db.ApplyPresence(ctx, pa.Batch{Watchers: []pa.WatcherRecord{w}, Publications: []pa.PublicationRecord{p}, Origin: "b"}); err != nil {
			t.Fatal(err)
		}
		last, err := db.LastPresenceChange(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The owner's timers fired at the expiry it knew, before the refresh.
		ew, ep := w, p
		ew.Expires, ep.Expires = 2_000_000_000, 2_000_000_000
		ew.Expired, ep.Expired = true, true
		if err := db.ApplyPresence(ctx, pa.Batch{RemovedWatchers: []pa.WatcherRecord{ew}, RemovedPublications: []pa.PublicationRecord{ep}, Origin: "a"}); err != nil {
			t.Fatal(err)
		}
		pubs, subs, err := db.LoadPresence(ctx)
		if err != nil || len(subs) != 1 || len(pubs) != 1 {
			t.Fatalf("refreshed rows removed by an older expiry: %+v %+v %v", pubs, subs, err)
		}
		if cs, err := db.PresenceChanges(ctx, last, 10, nil); err != nil || len(cs) != 0 {
			t.Fatalf("changes %+v %v, want none (nothing removed)", cs, err)
		}
		// At the stored expiry they go.
		ew.Expires, ep.Expires = 2_000_000_100, 2_000_000_100
		if err := db.ApplyPresence(ctx, pa.Batch{RemovedWatchers: []pa.WatcherRecord{ew}, RemovedPublications: []pa.PublicationRecord{ep}, Origin: "a"}); err != nil {
			t.Fatal(err)
		}
		if pubs, subs, err := db.LoadPresence(ctx); err != nil || len(subs) != 0 || len(pubs) != 0 {
			t.Fatalf("expired rows kept: %+v %+v %v", pubs, subs, err)
		}
		if cs, err := db.PresenceChanges(ctx, last, 10, nil); err != nil || len(cs) != 2 {
			t.Fatalf("changes %+v %v, want the two removals", cs, err)
		}
	})
}

// The entries the reader skips (its own, those it applied) come back with
// their id and origin only, their rows not read.
func TestPresenceChangesSkip(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		for i, origin := range []string{"a", "b", "b"} {
			w := pa.WatcherRecord{PresURI: "sip:alice@example.com", WatcherURI: "sip:bob@example.com", Event: "presence",
				CallID: fmt.Sprintf("c%d", i), ToTag: "t1", FromTag: "f1", Contact: "sip:bob@10.0.0.2",
				LocalContact: "sip:pa@127.0.0.1", Expires: 2_000_000_000, Status: "active"}
			if err := db.ApplyPresence(ctx, pa.Batch{Watchers: []pa.WatcherRecord{w}, Origin: origin}); err != nil {
				t.Fatal(err)
			}
		}
		all, err := db.PresenceChanges(ctx, 0, 10, nil)
		if err != nil || len(all) != 3 {
			t.Fatal(all, err)
		}
		seen := all[1].ID
		cs, err := db.PresenceChanges(ctx, 0, 10, func(id int64, origin string) bool { return origin == "a" || id == seen })
		if err != nil || len(cs) != 3 {
			t.Fatal(cs, err)
		}
		for i, c := range cs {
			if c.ID != all[i].ID || c.Origin != all[i].Origin {
				t.Fatalf("entry %d: %+v, want id %d origin %s", i, c, all[i].ID, all[i].Origin)
			}
			if read := c.Subscription.CallID != ""; read != (i == 2) {
				t.Errorf("entry %d (origin %s): row read %v", i, c.Origin, read)
			}
		}
	})
}
