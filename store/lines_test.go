package store_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/puaside/puaside/internal/dbtest"
	"github.com/puaside/puaside/store"
)

func TestSharedLines(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		got, err := db.LoadSharedLines(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 0 {
			t.Fatalf("empty table: got %v", got)
		}

		steps := []struct {
			name   string
			save   map[string][]string
			delete string
			wantOK bool
			want   map[string][]string
		}{
			{
				name: "two lines",
				save: map[string][]string{
					"sip:100@example.com": {"sip:pol2@10.0.0.2", "sip:pol1@10.0.0.1", "sip:pol1@10.0.0.1", ""},
					"sip:200@example.com": nil,
				},
				want: map[string][]string{
					"sip:100@example.com": {"sip:pol1@10.0.0.1", "sip:pol2@10.0.0.2"},
					"sip:200@example.com": {},
				},
			},
			{
				name: "replace members",
				save: map[string][]string{"sip:100@example.com": {"sip:pol3@10.0.0.3"}},
				want: map[string][]string{
					"sip:100@example.com": {"sip:pol3@10.0.0.3"},
					"sip:200@example.com": {},
				},
			},
			{
				name:   "delete",
				delete: "sip:200@example.com",
				wantOK: true,
				want:   map[string][]string{"sip:100@example.com": {"sip:pol3@10.0.0.3"}},
			},
			{
				name:   "delete missing",
				delete: "sip:999@example.com",
				wantOK: false,
				want:   map[string][]string{"sip:100@example.com": {"sip:pol3@10.0.0.3"}},
			},
		}
		for _, st := range steps {
			for aor, m := range st.save {
				if err := db.SaveSharedLine(ctx, aor, m); err != nil {
					t.Fatalf("%s: save %s: %v", st.name, aor, err)
				}
			}
			if st.delete != "" {
				ok, err := db.DeleteSharedLine(ctx, st.delete)
				if err != nil || ok != st.wantOK {
					t.Fatalf("%s: delete = %v, %v; want %v", st.name, ok, err, st.wantOK)
				}
			}
			got, err := db.LoadSharedLines(ctx)
			if err != nil {
				t.Fatalf("%s: load: %v", st.name, err)
			}
			if !reflect.DeepEqual(got, st.want) {
				t.Fatalf("%s: got %v, want %v", st.name, got, st.want)
			}
		}

		if err := db.SaveSharedLine(ctx, "", nil); !errors.Is(err, store.ErrEmptyAoR) {
			t.Errorf("save empty aor: %v", err)
		}
		if _, err := db.DeleteSharedLine(ctx, ""); !errors.Is(err, store.ErrEmptyAoR) {
			t.Errorf("delete empty aor: %v", err)
		}
	})
}
