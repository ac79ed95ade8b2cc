package store_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/dbtest"
	"github.com/puaside/puaside/pua"
	"github.com/puaside/puaside/schema"
	"github.com/puaside/puaside/store"
)

// kamailioScripts is where Debian's kamailio packages install the create
// scripts, per dialect.
var kamailioScripts = map[string]string{
	store.SQLite: "/usr/share/kamailio/db_sqlite",
	store.MySQL:  "/usr/share/kamailio/mysql",
}

// kamailioDB opens a database made by Kamailio's own standard and presence
// create scripts, holding pua rows as Kamailio's pua writes them.
func kamailioDB(t *testing.T, backend string, now time.Time) *store.DB {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, dbtest.URL(t, backend), "pua")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, f := range []string{"standard-create.sql", "presence-create.sql"} {
		b, err := os.ReadFile(filepath.Join(kamailioScripts[backend], f))
		if err != nil {
			t.Skipf("Kamailio's create scripts are not installed: %v", err)
		}
		for _, st := range schema.Split(string(b)) {
			if _, err := db.X.ExecContext(ctx, st); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
		}
	}
	live, dead := now.Unix()+3000, now.Unix()-100
	for _, r := range []struct {
		presURI, presID, etag, tuple string
		event, flag                  int
		expires                      int64
	}{
		// alice registered two phones: pua_usrloc publishes once per contact.
		{"sip:alice@example.com", "UL_PUBLISH.reg-a1", "etag-a1", "0x7fe01", 1, 1, live - 600},
		{"sip:alice@example.com", "UL_PUBLISH.reg-a2", "etag-a2", "0x7fe02", 1, 1, live},
		{"sip:bob@example.com", "UL_PUBLISH.reg-b1", "etag-b1", "0x7fe03", 1, 1, live},
		{"sip:carol@example.com", "UL_PUBLISH.reg-c1", "etag-c1", "0x7fe04", 1, 1, dead},
		{"sip:bob@example.com", "DIALOG_PUBLISH.5f1c", "etag-d1", "", 32, 1024, live},
		// pua keeps a row for every ETag a dialog publication had (one per
		// state of the call), under one identity.
		{"sip:bob@example.com", "DIALOG_PUBLISH.5f1c", "etag-d2", "", 32, 1024, live},
	} {
		var tuple any = r.tuple
		if r.tuple == "" {
			tuple = nil
		}
		if _, err := db.X.ExecContext(ctx, `INSERT INTO pua (pres_uri, pres_id, event, expires, desired_expires,
			flag, etag, tuple_id, watcher_uri, call_id, to_tag, from_tag, cseq, record_route, contact,
			remote_contact, version, extra_headers) VALUES (?, ?, ?, ?, 3600, ?, ?, ?, '', '', '', '', 0, NULL, '', '', 0, '')`,
			r.presURI, r.presID, r.event, r.expires, r.flag, r.etag, tuple); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

func TestMigrateAdoptsKamailioPuaTable(t *testing.T) {
	for _, backend := range []string{store.SQLite, store.MySQL} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			now := time.Now()
			db := kamailioDB(t, backend, now)
			if _, err := db.Migrate(ctx); err != nil {
				t.Fatalf("migrate on Kamailio's schema: %v", err)
			}
			if again, err := db.Migrate(ctx); err != nil || len(again) != 0 {
				t.Fatalf("second migrate = %v, %v", again, err)
			}
			// Before AdoptKamailio the dialog publication's two ETags are
			// one identity: one of them reads as a bad row.
			recs, bad, err := db.ReadRecords(ctx)
			if err != nil || len(bad) != 1 || len(recs) != 5 {
				t.Fatalf("read Kamailio rows after migrate: %d records, bad %v, %v", len(recs), bad, err)
			}
			// puaside's own columns work on the adopted table.
			rec := pua.Record{PresURI: "sip:dave@example.com", PresID: "usrloc", EventName: "presence",
				Flag: pua.FlagUsrloc, Expires: now.Unix() + 60, ETag: "e-dave", Body: []byte("<presence/>"),
				ContentType: "application/pidf+xml", ReqExpires: 600, Modified: true}
			if err := db.SaveRecords(ctx, []pua.Record{rec}, nil); err != nil {
				t.Fatalf("save on adopted table: %v", err)
			}
			// Call-IDs and tags stay case-sensitive on the adopted table.
			for _, id := range []string{"abc", "ABC"} {
				r := pua.Record{PresURI: "sip:w@example.com", PresID: "x", EventName: "presence",
					Flag: pua.FlagBLASubscribe, WatcherURI: "sip:w@example.com", CallID: id, FromTag: "t",
					Expires: now.Unix() + 60, ETag: ""}
				r.PresID = "x" + id
				if err := db.SaveRecords(ctx, []pua.Record{r}, nil); err != nil {
					t.Fatalf("save call id %s: %v", id, err)
				}
			}
		})
	}
}

func TestMigrateResumesHalfAppliedSchema(t *testing.T) {
	for _, backend := range []string{store.SQLite, store.MySQL} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			db := kamailioDB(t, backend, time.Now())
			// A run cut short: the first migrations applied, part of 002's
			// columns and indexes added, nothing recorded after 001.
			steps := []string{
				`CREATE TABLE IF NOT EXISTS puaside_migrations (name VARCHAR(255) NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL)`,
				`INSERT INTO puaside_migrations (name, applied_at) VALUES ('001_version.sql', 0)`,
				`ALTER TABLE pua ADD COLUMN body BLOB`,
				`ALTER TABLE pua ADD COLUMN event_name VARCHAR(64) NOT NULL DEFAULT ''`,
			}
			if backend == store.MySQL {
				steps = append(steps, "CREATE INDEX identity_idx ON pua (pres_uri, pres_id(128), event_name, flag, watcher_uri)")
			} else {
				steps = append(steps, "CREATE INDEX pua_identity_idx ON pua (pres_uri, pres_id, event_name, flag, watcher_uri)")
			}
			for _, st := range steps {
				if _, err := db.X.ExecContext(ctx, st); err != nil {
					t.Fatalf("%s: %v", st, err)
				}
			}
			if _, err := db.Migrate(ctx); err != nil {
				t.Fatalf("migrate after a half-applied run: %v", err)
			}
			if _, _, err := db.ReadRecords(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestAdoptKamailioPublications(t *testing.T) {
	for _, backend := range []string{store.SQLite, store.MySQL} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			now := time.Now()
			db := kamailioDB(t, backend, now)
			if _, err := db.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			res, err := db.AdoptKamailio(ctx, store.AdoptOptions{UsrlocPresID: "usrloc", Now: now})
			if err != nil {
				t.Fatal(err)
			}
			want := store.AdoptResult{Adopted: 3, Removing: 2, Expired: 1}
			if res != want {
				t.Fatalf("adopt = %+v, want %+v", res, want)
			}
			recs, bad, err := db.ReadRecords(ctx)
			if err != nil || len(bad) > 0 {
				t.Fatalf("records after adopt: %v, bad rows %+v", err, bad)
			}
			got := map[string]pua.Record{}
			for _, r := range recs {
				got[r.ETag] = r
			}
			if len(got) != 5 {
				t.Fatalf("records after adopt: %+v", recs)
			}
			// The longest-lived publication of alice is puaside's, under its ETag.
			if r := got["etag-a2"]; r.PresID != "usrloc" || r.Removing || r.EventName != "presence" || r.Body != nil {
				t.Errorf("alice's kept publication = %+v", r)
			}
			if r := got["etag-a1"]; !r.Removing || r.PresID == "usrloc" {
				t.Errorf("alice's second publication = %+v, want removing", r)
			}
			if r := got["etag-a2"]; r.DesiredExpires != r.Expires {
				t.Errorf("alice's kept publication ends at %d, want its expiry %d", r.DesiredExpires, r.Expires)
			}
			if r := got["etag-d1"]; r.DesiredExpires != 0 {
				t.Errorf("bob's dialog publication ends at %d, want 0 (swept unless claimed)", r.DesiredExpires)
			}
			if r := got["etag-b1"]; r.PresID != "usrloc" || r.Removing {
				t.Errorf("bob's publication = %+v", r)
			}
			if r := got["etag-d1"]; r.PresID != "DIALOG_PUBLISH.5f1c" || r.EventName != "dialog" || r.Removing || r.Flag != pua.FlagDialogPublish {
				t.Errorf("bob's dialog publication = %+v", r)
			}
			// The dialog publication's other ETag is removed at start
			// (whichever of the two the server holds goes).
			if r := got["etag-d2"]; !r.Removing || r.PresID == "DIALOG_PUBLISH.5f1c" || !strings.HasPrefix(r.PresID, "DIALOG_PUBLISH.5f1c#") {
				t.Errorf("bob's dialog publication's second ETag = %+v, want removing under an id of its own", r)
			}
			if _, ok := got["etag-c1"]; ok {
				t.Errorf("carol's expired publication kept")
			}
			if again, err := db.AdoptKamailio(ctx, store.AdoptOptions{UsrlocPresID: "usrloc", Now: now}); err != nil || again != (store.AdoptResult{}) {
				t.Errorf("second adopt = %+v, %v", again, err)
			}
		})
	}
}
