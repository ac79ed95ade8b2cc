package store_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

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
