package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/puaside/puaside/dialoginfo"
	"github.com/puaside/puaside/internal/dbtest"
	"github.com/puaside/puaside/pua"
	"github.com/puaside/puaside/store"
	"github.com/puaside/puaside/usrloc"
)

func TestLeaseTakeRenewRelease(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := db.EnsureShards(ctx, 4); err != nil {
			t.Fatal(err)
		}
		if err := db.EnsureShards(ctx, 4); err != nil {
			t.Fatalf("second EnsureShards: %v", err)
		}
		if err := db.EnsureShards(ctx, 2); !errors.Is(err, store.ErrShardCount) {
			t.Fatalf("EnsureShards(2) on 4 shards: %v, want ErrShardCount", err)
		}
		ep, ok, err := db.TakeLease(ctx, 1, "a", time.Minute)
		if err != nil || !ok || ep != 1 {
			t.Fatalf("take free shard: epoch %d ok %v err %v, want 1 true", ep, ok, err)
		}
		if _, ok, err := db.TakeLease(ctx, 1, "b", time.Minute); err != nil || ok {
			t.Fatalf("take held shard: ok %v err %v, want false", ok, err)
		}
		if _, ok, err := db.TakeLease(ctx, 1, "a", time.Minute); err != nil || ok {
			t.Fatalf("owner takes its own live shard: ok %v err %v, want false", ok, err)
		}
		ls, err := db.RenewLeases(ctx, "a", time.Minute)
		if err != nil || len(ls) != 1 || ls[0].Shard != 1 || ls[0].Epoch != 1 || ls[0].Left <= 50*time.Second {
			t.Fatalf("renew: %+v %v", ls, err)
		}
		if err := db.ReleaseLease(ctx, 1, "a", 1); err != nil {
			t.Fatal(err)
		}
		if ls, err := db.RenewLeases(ctx, "a", time.Minute); err != nil || len(ls) != 0 {
			t.Fatalf("renew after release: %+v %v, want none", ls, err)
		}
		ep, ok, err = db.TakeLease(ctx, 1, "b", time.Minute)
		if err != nil || !ok || ep != 2 {
			t.Fatalf("take released shard: epoch %d ok %v err %v, want 2 true", ep, ok, err)
		}
		all, err := db.Leases(ctx)
		if err != nil || len(all) != 4 || all[1].Owner != "b" || all[1].Epoch != 2 || all[0].Owner != "" {
			t.Fatalf("leases: %+v %v", all, err)
		}
	})
}

func TestLeaseExpiresOnDatabaseClock(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := db.EnsureShards(ctx, 1); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := db.TakeLease(ctx, 0, "a", 300*time.Millisecond); err != nil || !ok {
			t.Fatalf("take: %v %v", ok, err)
		}
		// Bounded wait for the lease to expire on the database clock.
		deadline := time.Now().Add(5 * time.Second)
		var ep int64
		for {
			var ok bool
			var err error
			ep, ok, err = db.TakeLease(ctx, 0, "b", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("lease of 300ms still held after 5s")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if ep != 2 {
			t.Fatalf("takeover epoch %d, want 2", ep)
		}
		if ls, err := db.RenewLeases(ctx, "a", time.Minute); err != nil || len(ls) != 0 {
			t.Fatalf("old owner renews a lost lease: %+v %v, want none", ls, err)
		}
	})
}

func TestInstancesHeartbeat(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		for _, id := range []string{"b", "a"} {
			if err := db.Heartbeat(ctx, id, time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Heartbeat(ctx, "a", time.Minute); err != nil {
			t.Fatalf("second heartbeat: %v", err)
		}
		if err := db.Heartbeat(ctx, "gone", -time.Second); err != nil {
			t.Fatal(err)
		}
		is, err := db.Instances(ctx)
		if err != nil || len(is) != 2 || is[0].ID != "a" || is[1].ID != "b" {
			t.Fatalf("instances: %+v %v", is, err)
		}
		if err := db.Leave(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if is, err := db.Instances(ctx); err != nil || len(is) != 1 || is[0].ID != "b" {
			t.Fatalf("after leave: %+v %v", is, err)
		}
	})
}

// TestEpochGuardRefusesStaleOwner: once another instance has taken the
// shard, the old owner's writes and deletions carrying the old epoch are
// refused while unfenced records and the new owner's go through.
func TestEpochGuardRefusesStaleOwner(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := db.EnsureShards(ctx, 2); err != nil {
			t.Fatal(err)
		}
		old, _, err := db.TakeLease(ctx, 0, "a", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		pub := func(uri, etag string, epoch int64) pua.Record {
			return pua.Record{PresURI: uri, PresID: "usrloc", EventName: "presence", Expires: time.Now().Unix() + 600,
				Flag: 1, ETag: etag, Body: []byte("<x/>"), ContentType: "application/pidf+xml", Shard: 0, Epoch: epoch}
		}
		if err := db.SaveRecords(ctx, []pua.Record{pub("sip:alice@x", "e1", old), pub("sip:carol@x", "c1", old)}, nil); err != nil {
			t.Fatalf("owner's write: %v", err)
		}
		// b takes shard 0 over (a's lease released here to stand for expiry).
		if err := db.ReleaseLease(ctx, 0, "a", old); err != nil {
			t.Fatal(err)
		}
		cur, ok, err := db.TakeLease(ctx, 0, "b", time.Minute)
		if err != nil || !ok || cur != old+1 {
			t.Fatalf("takeover: %d %v %v", cur, ok, err)
		}
		if err := db.SaveRecords(ctx, []pua.Record{pub("sip:alice@x", "e2", cur)}, nil); err != nil {
			t.Fatalf("new owner's write: %v", err)
		}
		unfenced := pub("sip:bob@x", "b1", 0)
		err = db.SaveRecords(ctx, []pua.Record{pub("sip:alice@x", "stale", old), unfenced}, []pua.Record{pub("sip:carol@x", "", old)})
		var se *pua.StaleEpochError
		if !errors.As(err, &se) || !errors.Is(err, pua.ErrStaleEpoch) || se.Refused != 2 || len(se.Shards) != 1 || se.Shards[0] != 0 {
			t.Fatalf("stale owner's write: %v, want StaleEpochError for 2 records of shard 0", err)
		}
		recs, err := db.LoadRecords(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, r := range recs {
			got[r.PresURI] = r.ETag
		}
		want := map[string]string{"sip:alice@x": "e2", "sip:bob@x": "b1", "sip:carol@x": "c1"}
		if len(got) != len(want) {
			t.Fatalf("rows %v, want %v", got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("rows %v, want %v", got, want)
			}
		}
		// An epoch for a shard without a lease row is refused too.
		r := pub("sip:dave@x", "d1", 1)
		r.Shard = 7
		if err := db.SaveRecords(ctx, []pua.Record{r}, nil); !errors.Is(err, pua.ErrStaleEpoch) {
			t.Fatalf("write for an unknown shard: %v, want ErrStaleEpoch", err)
		}
	})
}

// TestFencedTrackerWrites: with FenceTrackerWrites, contacts and calls are
// written only while the instance's heartbeat runs: a paused instance
// whose heartbeat lapsed cannot bring back an unregistered contact or an
// ended call that the others deleted; once it beats again it writes.
func TestFencedTrackerWrites(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		alice := map[string][]usrloc.Binding{"sip:alice@example.com": {{URI: "sip:alice@10.0.0.1",
			Expires: time.Now().Add(time.Hour).Truncate(time.Second), Q: -1}}}
		call := []dialoginfo.Record{{ID: "d1", CallID: "c1", FromTag: "ft", Caller: "sip:alice@example.com",
			Callee: "sip:bob@example.com", State: "confirmed", Data: []byte(`{}`)}}
		db.FenceTrackerWrites("p1")
		if err := db.SaveContacts(ctx, alice); !errors.Is(err, store.ErrFenced) {
			t.Fatalf("contacts before any heartbeat: %v, want ErrFenced", err)
		}
		if err := db.SaveDialogs(ctx, call, nil); !errors.Is(err, store.ErrFenced) {
			t.Fatalf("calls before any heartbeat: %v, want ErrFenced", err)
		}
		if err := db.Heartbeat(ctx, "p1", 300*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if err := db.SaveContacts(ctx, alice); err != nil {
			t.Fatalf("contacts while beating: %v", err)
		}
		if err := db.SaveDialogs(ctx, call, nil); err != nil {
			t.Fatalf("calls while beating: %v", err)
		}
		// Another instance's heartbeat is not this one's.
		if err := db.Heartbeat(ctx, "p2", time.Minute); err != nil {
			t.Fatal(err)
		}
		time.Sleep(400 * time.Millisecond)
		// p2 removes what ended; p1, paused past its heartbeat, would
		// write its old rows back.
		db.FenceTrackerWrites("p2")
		if err := db.SaveContacts(ctx, map[string][]usrloc.Binding{"sip:alice@example.com": nil}); err != nil {
			t.Fatal(err)
		}
		if err := db.SaveDialogs(ctx, nil, []string{"d1"}); err != nil {
			t.Fatal(err)
		}
		db.FenceTrackerWrites("p1")
		if err := db.SaveContacts(ctx, alice); !errors.Is(err, store.ErrFenced) {
			t.Fatalf("contacts after the heartbeat lapsed: %v, want ErrFenced", err)
		}
		if err := db.SaveDialogs(ctx, call, nil); !errors.Is(err, store.ErrFenced) {
			t.Fatalf("calls after the heartbeat lapsed: %v, want ErrFenced", err)
		}
		cs, err := db.LoadContacts(ctx)
		if err != nil || len(cs) != 0 {
			t.Fatalf("contacts %v %v, want none (the lapsed instance's write refused)", cs, err)
		}
		ds, err := db.LoadDialogs(ctx)
		if err != nil || len(ds) != 0 {
			t.Fatalf("calls %v %v, want none", ds, err)
		}
		if err := db.Heartbeat(ctx, "p1", time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := db.SaveContacts(ctx, alice); err != nil {
			t.Fatalf("contacts once beating again: %v", err)
		}
	})
}
