package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/journal"
	"github.com/puaside/puaside/pua"
	"github.com/puaside/puaside/store"
)

// TestOpenJournalReplaysIntoDatabase: at start the journal a crash left is
// written to the database (a newer ETag over the row, a removal, a new
// row; a torn tail skipped) and then dropped.
func TestOpenJournalReplaysIntoDatabase(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(ctx, "sqlite://"+filepath.Join(dir, "pua.db"), "pua")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	rec := func(uri, etag string) pua.Record {
		return pua.Record{PresURI: uri, PresID: "usrloc", EventName: "presence", Flag: pua.FlagUsrloc,
			ETag: etag, Expires: 2_000_000_000, Body: []byte("<presence/>"), ReqExpires: 3600}
	}
	if err := db.SaveRecords(ctx, []pua.Record{rec("sip:a@example.com", "a1"), rec("sip:b@example.com", "b1")}, nil); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pua.db.etags")
	j, _, _, err := journal.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var batch [][]byte
	for _, en := range []struct {
		op  string
		rec pua.Record
	}{
		{pua.JournalPut, rec("sip:a@example.com", "a2")},
		{pua.JournalDel, rec("sip:b@example.com", "")},
		{pua.JournalPut, rec("sip:c@example.com", "c1")},
	} {
		b, err := pua.EncodeJournalEntry(en.op, en.rec)
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, b)
	}
	if err := j.Append(batch); err != nil {
		t.Fatal(err)
	}
	j.Close() // without a Close it would be the same: every append is in the file
	f, _ := os.OpenFile(path+".1", os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{9, 0, 0, 0, 1, 2}) // a torn frame
	f.Close()

	j2, err := openJournal(ctx, path, db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	recs, err := db.LoadRecords(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range recs {
		got[r.PresURI] = r.ETag
	}
	if len(got) != 2 || got["sip:a@example.com"] != "a2" || got["sip:c@example.com"] != "c1" {
		t.Fatalf("rows after replay %v, want a2 and c1", got)
	}
	if m, _ := filepath.Glob(path + ".[0-9]*"); len(m) != 0 {
		t.Fatalf("journal files %v after the replay, want none", m)
	}
}

// testDB opens an SQLite database in dir with one row, a1.
func testDB(t *testing.T, dir string) *store.DB {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite://"+filepath.Join(dir, "pua.db"), "pua")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveRecords(ctx, []pua.Record{journalRec("sip:a@example.com", "a1")}, nil); err != nil {
		t.Fatal(err)
	}
	return db
}

func journalRec(uri, etag string) pua.Record {
	return pua.Record{PresURI: uri, PresID: "usrloc", EventName: "presence", Flag: pua.FlagUsrloc,
		ETag: etag, Expires: 2_000_000_000, Body: []byte("<presence/>"), ReqExpires: 3600}
}

// leaveJournal writes a journal at path holding payloads, as a crash
// leaves it.
func leaveJournal(t *testing.T, path string, payloads ...[]byte) {
	t.Helper()
	j, _, _, err := journal.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append(payloads); err != nil {
		t.Fatal(err)
	}
	j.Abandon()
}

func etagOf(t *testing.T, db *store.DB, uri string) string {
	t.Helper()
	recs, err := db.LoadRecords(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.PresURI == uri {
			return r.ETag
		}
	}
	return ""
}

// TestLeftJournalReplayedWithJournalOff: a journal left by a crash at the
// auto path is replayed and deleted at start though the journal is off
// now (it is not replayed, older than the database, when turned on later).
func TestLeftJournalReplayedWithJournalOff(t *testing.T) {
	dir := t.TempDir()
	db := testDB(t, dir)
	cfg := config.Default()
	cfg.DBURL = "sqlite://" + filepath.Join(dir, "pua.db")
	cfg.PUA.ETagJournal = "off"
	path := filepath.Join(dir, "pua.db.etags")
	if !slices.Contains(cfg.ETagJournalPaths(), path) || cfg.ETagJournalPath() != "" {
		t.Fatalf("paths %q, in use %q", cfg.ETagJournalPaths(), cfg.ETagJournalPath())
	}
	b, _ := pua.EncodeJournalEntry(pua.JournalPut, journalRec("sip:a@example.com", "a2"))
	leaveJournal(t, path, b)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := replayLeftJournals(context.Background(), cfg.ETagJournalPaths(), cfg.ETagJournalPath(), db, log); err != nil {
		t.Fatal(err)
	}
	if got := etagOf(t, db, "sip:a@example.com"); got != "a2" {
		t.Fatalf("ETag %q after start, want the journal's a2", got)
	}
	if ok, _ := journal.Exists(path); ok {
		t.Fatal("journal left after start")
	}
	// Nothing there: nothing created.
	other := filepath.Join(dir, "none.etags")
	if err := replayLeftJournals(context.Background(), []string{other}, "", db, log); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(other + "*"); len(m) != 0 {
		t.Fatalf("files created for no journal: %v", m)
	}
}

// TestOpenJournalRefusesWhatItCannotRead: an entry this build cannot read
// in a good frame, or a generation of another format version, fails the
// start; the database is untouched and the journal kept.
func TestOpenJournalRefusesWhatItCannotRead(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	t.Run("entry", func(t *testing.T) {
		dir := t.TempDir()
		db := testDB(t, dir)
		path := filepath.Join(dir, "pua.db.etags")
		b, _ := pua.EncodeJournalEntry(pua.JournalPut, journalRec("sip:a@example.com", "a2"))
		leaveJournal(t, path, b, []byte(`{"v":2,"op":"put","rec":{"pres_uri":"sip:a@example.com"}}`))
		if _, err := openJournal(context.Background(), path, db, log); !errors.Is(err, pua.ErrJournalEntry) {
			t.Fatalf("open: %v, want ErrJournalEntry", err)
		}
		if got := etagOf(t, db, "sip:a@example.com"); got != "a1" {
			t.Fatalf("ETag %q, want a1 untouched", got)
		}
		if ok, _ := journal.Exists(path); !ok {
			t.Fatal("journal not kept")
		}
	})
	t.Run("version", func(t *testing.T) {
		dir := t.TempDir()
		db := testDB(t, dir)
		path := filepath.Join(dir, "pua.db.etags")
		if err := os.WriteFile(path+".1", journal.AppendFrame([]byte("PSJRNL\x00\x02"), []byte("{}")), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := openJournal(context.Background(), path, db, log); !errors.Is(err, journal.ErrFormat) {
			t.Fatalf("open: %v, want ErrFormat", err)
		}
		if _, err := os.Stat(path + ".1"); err != nil {
			t.Fatalf("generation not kept: %v", err)
		}
	})
}
