package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/puaside/puaside/internal/dbtest"
	"github.com/puaside/puaside/store"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		url, driver string
		wantErr     bool
	}{
		{"sqlite://puaside.db", store.SQLite, false},
		{"mysql://root:@127.0.0.1:3306/test", store.MySQL, false},
		{"mysql://root@127.0.0.1/test", store.MySQL, false},
		{"postgres://x/y", "", true},
		{"puaside.db", "", true},
		{"mysql://root@127.0.0.1:3306/", "", true},
	} {
		d, _, err := store.ParseURL(tc.url)
		if (err != nil) != tc.wantErr || d != tc.driver {
			t.Errorf("ParseURL(%q) = %q, %v", tc.url, d, err)
		}
	}
	if _, _, err := store.ParseURL("postgres://x/y"); !errors.Is(err, store.ErrUnknownScheme) {
		t.Errorf("unknown scheme error = %v", err)
	}
}

func TestMigrateIdempotent(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		applied, err := db.Migrate(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(applied) != 0 {
			t.Fatalf("second migrate applied %v", applied)
		}
	})
}
