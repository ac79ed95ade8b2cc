package daemon

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

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
	for _, en := range []pua.JournalEntry{
		{Op: pua.JournalPut, Rec: rec("sip:a@example.com", "a2")},
		{Op: pua.JournalDel, Rec: rec("sip:b@example.com", "")},
		{Op: pua.JournalPut, Rec: rec("sip:c@example.com", "c1")},
	} {
		b, _ := json.Marshal(en)
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
	if m, _ := filepath.Glob(path + ".*"); len(m) != 1 || m[0] != path+".2" {
		t.Fatalf("journal files %v, want only the new generation", m)
	}
}
