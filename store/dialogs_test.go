package store_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/dialoginfo"
	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/internal/dbtest"
	"github.com/puaside/puaside/internal/puatest/recorder"
	"github.com/puaside/puaside/store"
)

func TestDialogsSaveLoadDelete(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a := dialoginfo.Record{ID: "a1", CallID: "c1", FromTag: "f1", Caller: "sip:a@x", Callee: "sip:b@x", State: "early", Data: []byte(`{"x":1}`), Updated: 10}
		b := dialoginfo.Record{ID: "b2", CallID: "c2", FromTag: "f2", State: "trying", Data: []byte(`{}`), Updated: 11}
		if err := db.SaveDialogs(ctx, []dialoginfo.Record{a, b}, nil); err != nil {
			t.Fatal(err)
		}
		a.State, a.Data = "confirmed", []byte(`{"x":2}`)
		if err := db.SaveDialogs(ctx, []dialoginfo.Record{a}, []string{"b2", "missing"}); err != nil {
			t.Fatal(err)
		}
		got, err := db.LoadDialogs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || !reflect.DeepEqual(got[0], a) {
			t.Fatalf("loaded %+v, want %+v", got, a)
		}
		if err := db.SaveDialogs(ctx, []dialoginfo.Record{{CallID: "x"}}, nil); err != nil {
			t.Fatalf("record without id: %v, want it set aside", err)
		}
		if got, err := db.LoadDialogs(ctx); err != nil || len(got) != 1 {
			t.Fatalf("after a record without id: %d rows, %v", len(got), err)
		}
	})
}

func TestDialogVersionsNeverGoDown(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := db.SaveDialogVersions(ctx, map[string]uint64{"sip:a@x": 5, "sip:b@x": 1}); err != nil {
			t.Fatal(err)
		}
		if err := db.SaveDialogVersions(ctx, map[string]uint64{"sip:a@x": 3, "sip:b@x": 7}); err != nil {
			t.Fatal(err)
		}
		got, err := db.LoadDialogVersions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]uint64{"sip:a@x": 5, "sip:b@x": 7}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("versions %v, want %v", got, want)
		}
	})
}

// bodies renders recorded calls as "publish <presentity> <body>" or
// "remove <presentity>".
func bodies(ops []recorder.Op) []string {
	var out []string
	for _, o := range ops {
		if o.Kind == recorder.Remove {
			out = append(out, "remove "+o.Key.PresURI)
			continue
		}
		out = append(out, "publish "+o.Key.PresURI+" "+string(o.Req.Body))
	}
	return out
}

func sipMsg(t *testing.T, s string) sip.Message {
	t.Helper()
	m, err := sip.ParseMessage([]byte(strings.ReplaceAll(s, "\n", "\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDialogRestartThroughDB: a call confirmed before a restart ends at BYE
// after it, on both databases.
func TestDialogRestartThroughDB(t *testing.T) {
	const hdr = "From: <sip:alice@example.com>;tag=ft\nCall-ID: restart-1\n"
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		p1 := recorder.New()
		tr1, err := dialoginfo.New(dialoginfo.DefaultConfig(), dialoginfo.Options{Publisher: p1, Store: db})
		if err != nil {
			t.Fatal(err)
		}
		tr1.HandleSIP(ctx, event.SIP{Msg: sipMsg(t, "INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\n"+hdr+"To: <sip:bob@example.com>\nCSeq: 1 INVITE\nContent-Length: 0\n\n")})
		tr1.HandleSIP(ctx, event.SIP{Msg: sipMsg(t, "SIP/2.0 200 OK\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\n"+hdr+"To: <sip:bob@example.com>;tag=tt\nCSeq: 1 INVITE\nContact: <sip:bob@10.0.0.2>\nContent-Length: 0\n\n")})
		if err := tr1.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		p2 := recorder.New()
		tr2, err := dialoginfo.New(dialoginfo.DefaultConfig(), dialoginfo.Options{Publisher: p2, Store: db})
		if err != nil {
			t.Fatal(err)
		}
		if err := tr2.Start(ctx); err != nil {
			t.Fatal(err)
		}
		tr2.HandleSIP(ctx, event.SIP{Msg: sipMsg(t, "BYE sip:bob@10.0.0.2 SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK2\n"+hdr+"To: <sip:bob@example.com>;tag=tt\nCSeq: 2 BYE\nContent-Length: 0\n\n")})
		ops := bodies(p2.Ops())
		if len(ops) != 2 || !strings.Contains(ops[0], `version="3"`) || !strings.Contains(ops[0], `event="local-bye"`) ||
			!strings.Contains(ops[1], `version="2"`) || !strings.Contains(ops[1], `event="remote-bye"`) {
			t.Fatalf("after restart: %q", ops)
		}
	})
}

// TestDialogsMany saves more calls and versions than one statement holds,
// with an id upserted twice and one both removed and upserted.
func TestDialogsMany(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		const n = 1234
		var recs []dialoginfo.Record
		versions := map[string]uint64{}
		for i := range n {
			recs = append(recs, dialoginfo.Record{ID: fmt.Sprintf("id-%04d", i), CallID: fmt.Sprintf("c%d", i),
				FromTag: "f", State: "early", Data: []byte(fmt.Sprint(i)), Updated: int64(i)})
			versions[fmt.Sprintf("sip:u%d@x", i)] = uint64(i)
		}
		if err := db.SaveDialogs(ctx, recs, nil); err != nil {
			t.Fatal(err)
		}
		if err := db.SaveDialogVersions(ctx, versions); err != nil {
			t.Fatal(err)
		}
		// Remove the first 600, upsert id-0001 twice (the last wins) and
		// id-0002 while removing it.
		var remove []string
		for i := range 600 {
			remove = append(remove, recs[i].ID)
		}
		first, second := recs[1], recs[1]
		first.State, second.State = "trying", "confirmed"
		again := recs[2]
		again.State = "terminated"
		if err := db.SaveDialogs(ctx, []dialoginfo.Record{first, again, second}, remove); err != nil {
			t.Fatal(err)
		}
		wantCalls := append([]dialoginfo.Record{second, again}, recs[600:]...)
		got, err := db.LoadDialogs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, wantCalls) {
			t.Fatalf("loaded %d calls, want %d", len(got), len(wantCalls))
		}
		// Raise every odd version, lower every even one, add one entity.
		update := map[string]uint64{"sip:new@x": 3}
		want := map[string]uint64{"sip:new@x": 3}
		for e, v := range versions {
			switch {
			case v%2 == 1:
				update[e], want[e] = v+10, v+10
			case v > 0:
				update[e], want[e] = v-1, v // lowered: the stored value stays
			default:
				want[e] = v
			}
		}
		if err := db.SaveDialogVersions(ctx, update); err != nil {
			t.Fatal(err)
		}
		gotV, err := db.LoadDialogVersions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(gotV, want) {
			t.Fatalf("versions differ: %d stored, want %d", len(gotV), len(want))
		}
	})
}
