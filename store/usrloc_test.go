package store_test

import (
	"context"
	"errors"
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
