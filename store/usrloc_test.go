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
	"github.com/puaside/puaside/store"
	"github.com/puaside/puaside/usrloc"
)

func TestUsrlocContacts(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		exp := time.Unix(1800000000, 0)
		long := "sip:" + strings.Repeat("x", 600) + "@10.0.0.1;ob" // longer than any VARCHAR
		alice := []usrloc.Binding{
			{URI: "sip:alice@10.0.0.1:5060", Expires: exp, Q: 0.5, Received: "sip:1.2.3.4:5060",
				CallID: "c1", CSeq: 7, Instance: "<urn:uuid:1>", UserAgent: "phone"},
			{URI: long, Expires: exp.Add(time.Minute), Q: -1},
		}
		bob := []usrloc.Binding{{URI: "sip:bob@10.0.0.2?x=1&y=2", Expires: exp, Q: 1}}
		steps := []struct {
			name string
			save map[string][]usrloc.Binding
			want map[string][]usrloc.Binding
		}{
			{"insert two AoRs", map[string][]usrloc.Binding{"sip:alice@example.com": alice, "sip:bob@example.com": bob},
				map[string][]usrloc.Binding{"sip:alice@example.com": alice, "sip:bob@example.com": bob}},
			{"replace one", map[string][]usrloc.Binding{"sip:alice@example.com": alice[:1]},
				map[string][]usrloc.Binding{"sip:alice@example.com": alice[:1], "sip:bob@example.com": bob}},
			{"delete one", map[string][]usrloc.Binding{"sip:bob@example.com": nil},
				map[string][]usrloc.Binding{"sip:alice@example.com": alice[:1]}},
			{"delete unknown", map[string][]usrloc.Binding{"sip:nobody@example.com": {}},
				map[string][]usrloc.Binding{"sip:alice@example.com": alice[:1]}},
		}
		for _, s := range steps {
			if err := db.SaveContacts(ctx, s.save); err != nil {
				t.Fatalf("%s: save: %v", s.name, err)
			}
			got, err := db.LoadContacts(ctx)
			if err != nil {
				t.Fatalf("%s: load: %v", s.name, err)
			}
			if !reflect.DeepEqual(got, s.want) {
				t.Fatalf("%s:\n got %+v\nwant %+v", s.name, got, s.want)
			}
		}
		if err := db.SaveContacts(ctx, map[string][]usrloc.Binding{"": bob}); !errors.Is(err, store.ErrEmptyUsrlocAoR) {
			t.Fatalf("empty AoR: got %v", err)
		}
	})
}

// TestUsrlocContactsMany saves more AoRs and rows than one statement holds
// (full-size batches and a shorter last one), then replaces, shrinks and
// deletes some of them.
func TestUsrlocContactsMany(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		exp := time.Unix(1800000000, 0)
		want := map[string][]usrloc.Binding{}
		for i := range 1234 {
			aor := fmt.Sprintf("sip:u%d@example.com", i)
			for j := range 1 + i%3 {
				want[aor] = append(want[aor], usrloc.Binding{URI: fmt.Sprintf("sip:u%d-%d@10.0.0.1", i, j),
					Expires: exp.Add(time.Duration(i) * time.Second), Q: float64(j) / 10, CallID: fmt.Sprint(i), CSeq: uint32(j)})
			}
		}
		if err := db.SaveContacts(ctx, want); err != nil {
			t.Fatal(err)
		}
		change := map[string][]usrloc.Binding{}
		for i := range 700 {
			aor := fmt.Sprintf("sip:u%d@example.com", i)
			switch i % 3 {
			case 0:
				change[aor] = nil
				delete(want, aor)
			case 1:
				change[aor] = want[aor][1:]
				want[aor] = want[aor][1:]
			case 2:
				bs := append([]usrloc.Binding{{URI: "sip:new@10.0.0.9", Expires: exp, Q: -1}}, want[aor]...)
				change[aor], want[aor] = bs, bs
			}
		}
		if err := db.SaveContacts(ctx, change); err != nil {
			t.Fatal(err)
		}
		got, err := db.LoadContacts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("loaded %d AoRs, want %d", len(got), len(want))
		}
		for aor, bs := range want {
			if !reflect.DeepEqual(got[aor], bs) {
				t.Fatalf("%s:\n got %+v\nwant %+v", aor, got[aor], bs)
			}
		}
	})
}

func TestUsrlocFlags(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		type op struct {
			aor    string
			on     bool
			delete bool
		}
		steps := []struct {
			op   op
			want map[string]bool
		}{
			{op{aor: "sip:a@x", on: true}, map[string]bool{"sip:a@x": true}},
			{op{aor: "sip:b@x", on: false}, map[string]bool{"sip:a@x": true, "sip:b@x": false}},
			{op{aor: "sip:a@x", on: false}, map[string]bool{"sip:a@x": false, "sip:b@x": false}},
			{op{aor: "sip:b@x", delete: true}, map[string]bool{"sip:a@x": false}},
			{op{aor: "sip:zz@x", delete: true}, map[string]bool{"sip:a@x": false}},
		}
		for i, s := range steps {
			var err error
			if s.op.delete {
				err = db.DeleteFlag(ctx, s.op.aor)
			} else {
				err = db.SetFlag(ctx, s.op.aor, s.op.on)
			}
			if err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			got, err := db.LoadFlags(ctx)
			if err != nil {
				t.Fatalf("step %d: load: %v", i, err)
			}
			if !reflect.DeepEqual(got, s.want) {
				t.Fatalf("step %d: got %v want %v", i, got, s.want)
			}
		}
		if err := db.SetFlag(ctx, "", true); !errors.Is(err, store.ErrEmptyUsrlocAoR) {
			t.Fatalf("empty AoR: got %v", err)
		}
	})
}

// BenchmarkSaveContacts measures one usrloc write-behind flush on SQLite:
// 1,000 AoRs re-registered (new expiry and CSeq), one AoR in ten with two
// contacts, over a table already holding their rows.
func BenchmarkSaveContacts(b *testing.B) {
	db := dbtest.Open(b, store.SQLite)
	ctx := context.Background()
	exp := time.Unix(1800000000, 0)
	aors := make(map[string][]usrloc.Binding, 1000)
	for i := range 1000 {
		aor := fmt.Sprintf("sip:u%d@load.example", i)
		n := 1
		if i%10 == 0 {
			n = 2
		}
		for j := range n {
			aors[aor] = append(aors[aor], usrloc.Binding{
				URI: fmt.Sprintf("sip:u%d@10.0.%d.%d:5060;transport=udp", i, j, i%250), Expires: exp, Q: -1,
				Received: "sip:192.0.2.1:5060", CallID: fmt.Sprintf("call-%d-%d", i, j), CSeq: 1,
				UserAgent: "load",
			})
		}
	}
	if err := db.SaveContacts(ctx, aors); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		for _, bs := range aors {
			for j := range bs {
				bs[j].Expires = bs[j].Expires.Add(time.Second)
				bs[j].CSeq++
			}
		}
		if err := db.SaveContacts(ctx, aors); err != nil {
			b.Fatal(err)
		}
	}
}
