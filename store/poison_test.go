package store_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/puaside/puaside/dialoginfo"
	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/internal/dbtest"
	"github.com/puaside/puaside/internal/puatest"
	"github.com/puaside/puaside/internal/puatest/recorder"
	"github.com/puaside/puaside/metrics"
	"github.com/puaside/puaside/pua"
	"github.com/puaside/puaside/store"
	"github.com/puaside/puaside/usrloc"
)

// watch gives db a metrics registry and a log buffer.
func watch(db *store.DB) (*metrics.Metrics, *bytes.Buffer) {
	var buf bytes.Buffer
	db.Metrics = metrics.New()
	db.Log = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return db.Metrics, &buf
}

// quarantined reads puaside_store_rows_quarantined_total{table}.
func quarantined(t *testing.T, m *metrics.Metrics, table string) float64 {
	t.Helper()
	return puatest.Metric(t, m, "puaside_store_rows_quarantined_total", map[string]string{"table": table})
}

// within fails unless s is valid UTF-8 of at most n characters.
func within(t *testing.T, what, s string, n int) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Errorf("%s is not valid UTF-8: %q", what, s)
	}
	if c := utf8.RuneCountInString(s); c > n {
		t.Errorf("%s is %d characters, more than %d", what, c, n)
	}
}

// TestRecordsPoisonSetAside: among good records, one whose identity cannot
// fit, one out of range and one the database refuses (a unique key
// collision) are set aside, once logged and counted; every other record is
// written, with over-long and badly encoded values fitted to their columns.
func TestRecordsPoisonSetAside(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		m, logs := watch(db)
		ctx := context.Background()
		var recs []pua.Record
		for i := 0; i < 20; i++ {
			recs = append(recs, publication(i))
		}
		longURI := publication(100)
		longURI.PresURI = "sip:" + strings.Repeat("u", 300) + "@example.com"
		negative := publication(101)
		negative.Expires = -1
		first, second := publication(102), publication(103)
		first.ETag, second.ETag = "", ""
		first.TupleID, second.TupleID = "same", "same"
		sub := subscription(104)
		sub.CallID = strings.Repeat("é", 300) + "@host"                                 // 300 two-byte characters
		sub.Contact = "sip:\xff\xfe@10.0.0.2"                                           // invalid UTF-8
		sub.ExtraHeaders = []pua.Header{{Name: "X", Value: strings.Repeat("€", 30000)}} // 90 kB of three-byte characters
		recs = append(recs[:10], append([]pua.Record{longURI, first, negative, sub, second}, recs[10:]...)...)

		if err := db.SaveRecords(ctx, recs, nil); err != nil {
			t.Fatalf("SaveRecords = %v, want the good records written", err)
		}
		got := mustLoad(t, db)
		if len(got) != 22 {
			t.Fatalf("loaded %d records, want 22 (20 + first + sub)", len(got))
		}
		for _, r := range got {
			switch r.PresURI {
			case longURI.PresURI, negative.PresURI, second.PresURI:
				t.Errorf("set-aside record %s written", r.PresURI)
			case sub.PresURI:
				within(t, "call_id", r.CallID, 255)
				if r.CallID != strings.Repeat("é", 255) {
					t.Errorf("call_id not cut at 255 characters: %d bytes", len(r.CallID))
				}
				if r.Contact != "sip:\uFFFD@10.0.0.2" {
					t.Errorf("contact %q, want the invalid bytes replaced", r.Contact)
				}
				if len(r.ExtraHeaders) != 1 || r.ExtraHeaders[0].Name != "X" || !utf8.ValidString(r.ExtraHeaders[0].Value) ||
					len(r.ExtraHeaders[0].Value) > 65535-len("X: ") || !strings.HasPrefix(r.ExtraHeaders[0].Value, "€€") {
					t.Errorf("extra_headers: %d headers, want one X cut to the column", len(r.ExtraHeaders))
				}
			}
			for _, v := range []string{r.PresURI, r.PresID, r.ETag, r.TupleID, r.WatcherURI, r.ToTag, r.FromTag, r.RemoteContact} {
				within(t, "value", v, 255)
			}
		}
		if n := quarantined(t, m, "pua"); n != 3 {
			t.Errorf("quarantined %v rows, want 3", n)
		}
		if n := strings.Count(logs.String(), "row set aside"); n != 3 {
			t.Errorf("%d set-aside log lines, want 3:\n%s", n, logs)
		}

		// The same batch again: nothing more is written or logged, the
		// rows are counted again, and the call still succeeds.
		if err := db.SaveRecords(ctx, recs, nil); err != nil {
			t.Fatal(err)
		}
		if n := countRows(t, db); n != 22 {
			t.Errorf("%d rows after the second save, want 22", n)
		}
		if n := quarantined(t, m, "pua"); n != 6 {
			t.Errorf("quarantined %v rows, want 6", n)
		}
		if n := strings.Count(logs.String(), "row set aside"); n != 3 {
			t.Errorf("%d set-aside log lines after the second save, want still 3", n)
		}
	})
}

// TestContactsPoisonSetAside: a hostile User-Agent (invalid UTF-8, then
// 300 multi-byte characters) and 300-character Call-ID are stored fitted;
// an AoR too long for its column is set aside and every other AoR written.
func TestContactsPoisonSetAside(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		m, _ := watch(db)
		ctx := context.Background()
		save := map[string][]usrloc.Binding{}
		for i := 0; i < 150; i++ {
			save[fmt.Sprintf("sip:u%03d@example.com", i)] = []usrloc.Binding{{URI: fmt.Sprintf("sip:u%03d@10.0.0.1", i), Q: -1}}
		}
		hostile := "sip:hostile@example.com"
		save[hostile] = []usrloc.Binding{{
			URI: "sip:hostile@10.0.0.9", Q: -1,
			UserAgent: "\xff\xfePolycom " + strings.Repeat("ü", 300),
			CallID:    strings.Repeat("c", 300),
			Instance:  "<urn:uuid:\xc3>",
		}}
		longAoR := "sip:" + strings.Repeat("a", 300) + "@example.com"
		save[longAoR] = []usrloc.Binding{{URI: "sip:x@10.0.0.8", Q: -1}}
		if err := db.SaveContacts(ctx, save); err != nil {
			t.Fatalf("SaveContacts = %v, want the good AoRs written", err)
		}
		got, err := db.LoadContacts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 151 {
			t.Fatalf("loaded %d AoRs, want 151", len(got))
		}
		if _, ok := got[longAoR]; ok {
			t.Error("AoR too long for its column written")
		}
		b := got[hostile]
		if len(b) != 1 {
			t.Fatalf("hostile AoR has %d bindings", len(b))
		}
		within(t, "user_agent", b[0].UserAgent, 255)
		if !strings.HasPrefix(b[0].UserAgent, "\uFFFDPolycom üü") || utf8.RuneCountInString(b[0].UserAgent) != 255 {
			t.Errorf("user_agent %q", b[0].UserAgent)
		}
		within(t, "call_id", b[0].CallID, 255)
		within(t, "instance", b[0].Instance, 255)
		if n := quarantined(t, m, "puaside_contacts"); n != 1 {
			t.Errorf("quarantined %v, want 1", n)
		}
		if err := db.SetFlag(ctx, longAoR, true); err != nil {
			t.Errorf("SetFlag of an AoR too long = %v, want it set aside", err)
		}
		if n := quarantined(t, m, "puaside_publish_flags"); n != 1 {
			t.Errorf("flags quarantined %v, want 1", n)
		}
	})
}

// TestDialogsPoisonSetAside: a 300-character Call-ID and a caller of
// invalid UTF-8 are stored fitted (the call's data keeps them whole);
// records without a usable id and entities too long are set aside.
func TestDialogsPoisonSetAside(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		m, _ := watch(db)
		ctx := context.Background()
		longCID := strings.Repeat("k", 300)
		recs := []dialoginfo.Record{
			{ID: "a1", CallID: longCID, FromTag: strings.Repeat("t", 200), Caller: "sip:\xff@x", Callee: "sip:" + strings.Repeat("ß", 300), State: "early", Data: []byte(`{"call_id":"` + longCID + `"}`)},
			{ID: "", CallID: "no-id", Data: []byte(`{}`)},
			{ID: strings.Repeat("9", 65), CallID: "long-id", Data: []byte(`{}`)},
			{ID: "b2", CallID: "c2", FromTag: "f2", State: "trying", Data: []byte(`{}`)},
		}
		if err := db.SaveDialogs(ctx, recs, nil); err != nil {
			t.Fatalf("SaveDialogs = %v", err)
		}
		got, err := db.LoadDialogs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].ID != "a1" || got[1].ID != "b2" {
			t.Fatalf("loaded %+v, want a1 and b2", got)
		}
		a := got[0]
		if a.CallID != longCID[:255] || a.FromTag != strings.Repeat("t", 128) || a.Caller != "sip:\uFFFD@x" {
			t.Errorf("fitted values: call_id %d, from_tag %d, caller %q", len(a.CallID), len(a.FromTag), a.Caller)
		}
		within(t, "callee", a.Callee, 255)
		if !bytes.Contains(a.Data, []byte(longCID)) {
			t.Error("data lost the whole Call-ID")
		}
		if n := quarantined(t, m, "puaside_dialogs"); n != 2 {
			t.Errorf("quarantined %v, want 2", n)
		}
		long := "sip:" + strings.Repeat("e", 300) + "@x"
		if err := db.SaveDialogVersions(ctx, map[string]uint64{"sip:a@x": 3, long: 4, "sip:\xff@x": 5}); err != nil {
			t.Fatalf("SaveDialogVersions = %v", err)
		}
		vers, err := db.LoadDialogVersions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(vers) != 1 || vers["sip:a@x"] != 3 {
			t.Errorf("versions %v, want only sip:a@x", vers)
		}
		if n := quarantined(t, m, "puaside_dialog_versions"); n != 2 {
			t.Errorf("versions quarantined %v, want 2", n)
		}
	})
}

// TestUsrlocFlushWithPoison: usrloc contacts with hostile User-Agents
// (invalid UTF-8, 300 multi-byte characters): the tracker's flush
// succeeds and every contact is stored, fitted.
func TestUsrlocFlushWithPoison(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		ul, err := usrloc.New(usrloc.DefaultConfig(), usrloc.Options{Publisher: recorder.New(), Store: db})
		if err != nil {
			t.Fatal(err)
		}
		for i, ua := range []string{"\xff\xfe\xfd evil", strings.Repeat("ж", 300), "Polycom/6.0"} {
			ul.HandleSIP(ctx, sipEvent(t, fmt.Sprintf("REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bKr%d\n"+
				"From: <sip:u%d@example.com>;tag=f%d\nTo: <sip:u%d@example.com>\nCall-ID: reg-%d\nCSeq: 1 REGISTER\n"+
				"Contact: <sip:u%d@10.0.0.%d>\nExpires: 3600\nUser-Agent: %s\nContent-Length: 0\n\n", i, i, i, i, i, i, i+1, ua)))
		}
		if err := ul.Flush(ctx); err != nil {
			t.Fatalf("usrloc flush: %v", err)
		}
		got, err := db.LoadContacts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 {
			t.Fatalf("stored %d AoRs, want 3", len(got))
		}
		for aor, bs := range got {
			for _, b := range bs {
				within(t, aor+" user_agent", b.UserAgent, 255)
			}
		}
	})
}

// TestDialoginfoFlushWithPoison: a call with a 300-character Call-ID and a
// 300-character caller: the tracker's flush succeeds, and a restarted
// tracker ends the call at its BYE.
func TestDialoginfoFlushWithPoison(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		longCID := strings.Repeat("x", 300) + "@host"
		caller := "sip:" + strings.Repeat("a", 300) + "@example.com"
		hdr := "From: <" + caller + ">;tag=ft\nCall-ID: " + longCID + "\n"
		p1 := recorder.New()
		d1, err := dialoginfo.New(dialoginfo.DefaultConfig(), dialoginfo.Options{Publisher: p1, Store: db})
		if err != nil {
			t.Fatal(err)
		}
		d1.HandleSIP(ctx, sipEvent(t, "INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\n"+hdr+"To: <sip:bob@example.com>\nCSeq: 1 INVITE\nContent-Length: 0\n\n"))
		d1.HandleSIP(ctx, sipEvent(t, "SIP/2.0 200 OK\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\n"+hdr+"To: <sip:bob@example.com>;tag=tt\nCSeq: 1 INVITE\nContact: <sip:bob@10.0.0.2>\nContent-Length: 0\n\n"))
		if err := d1.Flush(ctx); err != nil {
			t.Fatalf("dialoginfo flush: %v", err)
		}
		if err := d1.Flush(ctx); err != nil {
			t.Fatalf("second dialoginfo flush: %v", err)
		}
		p2 := recorder.New()
		d2, err := dialoginfo.New(dialoginfo.DefaultConfig(), dialoginfo.Options{Publisher: p2, Store: db})
		if err != nil {
			t.Fatal(err)
		}
		if err := d2.Start(ctx); err != nil {
			t.Fatal(err)
		}
		d2.HandleSIP(ctx, sipEvent(t, "BYE sip:bob@10.0.0.2 SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK2\n"+hdr+"To: <sip:bob@example.com>;tag=tt\nCSeq: 2 BYE\nContent-Length: 0\n\n"))
		terminated, ops := 0, bodies(p2.Ops())
		for _, op := range ops {
			if strings.Contains(op, "terminated") {
				terminated++
			}
		}
		if terminated != 2 {
			t.Fatalf("after restart the BYE published %d terminated documents, want 2: %q", terminated, ops)
		}
	})
}

// sipEvent is a replicated copy of a SIP message written with \n line ends.
func sipEvent(t *testing.T, s string) event.SIP {
	t.Helper()
	return event.SIP{Msg: sipMsg(t, s), Source: event.SourceReplicate}
}

// TestKeysAreCaseSensitive: SIP users are case-sensitive, so AoRs and
// entities differing only in case are different rows on both databases.
func TestKeysAreCaseSensitive(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *store.DB) {
		m, _ := watch(db)
		ctx := context.Background()
		if err := db.SaveDialogVersions(ctx, map[string]uint64{"sip:Alice@x": 3, "sip:alice@x": 5}); err != nil {
			t.Fatal(err)
		}
		vers, err := db.LoadDialogVersions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(vers) != 2 || vers["sip:Alice@x"] != 3 || vers["sip:alice@x"] != 5 {
			t.Errorf("versions %v", vers)
		}
		if err := db.SetFlag(ctx, "sip:Bob@x", true); err != nil {
			t.Fatal(err)
		}
		if err := db.SetFlag(ctx, "sip:bob@x", false); err != nil {
			t.Fatal(err)
		}
		flags, err := db.LoadFlags(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(flags) != 2 || !flags["sip:Bob@x"] || flags["sip:bob@x"] {
			t.Errorf("flags %v", flags)
		}
		if err := db.SaveSharedLine(ctx, "sip:Line@x", []string{"sip:A@1", "sip:a@1"}); err != nil {
			t.Fatal(err)
		}
		if err := db.SaveSharedLine(ctx, "sip:line@x", nil); err != nil {
			t.Fatal(err)
		}
		lines, err := db.LoadSharedLines(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(lines) != 2 || len(lines["sip:Line@x"]) != 2 {
			t.Errorf("lines %v", lines)
		}
		if n := quarantined(t, m, "puaside_dialog_versions"); n != 0 {
			t.Errorf("%v versions set aside", n)
		}
	})
}
