package pua

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzJournalEntry feeds arbitrary payloads to the journal entry decoder:
// it never panics, and an entry it accepts encodes again to a payload that
// decodes to the same operation and record (what the replay writes is what
// was appended). Seeds: the entries of a put and a del, and testdata.
func FuzzJournalEntry(f *testing.F) {
	for _, seed := range []struct {
		op string
		r  Record
	}{
		{JournalPut, Record{PresURI: "sip:alice@example.com", PresID: "p1", EventName: "presence", Flag: FlagUsrloc,
			ETag: "a.1", Expires: 1700000000, Body: []byte("<presence/>"), ExtraHeaders: []Header{{Name: "Sender", Value: "x"}}}},
		{JournalDel, Record{PresURI: "sip:bob@example.com", PresID: "d1", EventName: "dialog", Flag: FlagDialogPublish}},
	} {
		b, err := EncodeJournalEntry(seed.op, seed.r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		op, r, err := decodeJournalEntry(p)
		if err != nil {
			return
		}
		b, err := EncodeJournalEntry(op, r)
		if err != nil {
			t.Fatalf("a decoded entry does not encode: %v", err)
		}
		op2, r2, err := decodeJournalEntry(b)
		if err != nil || op2 != op || !reflect.DeepEqual(r2, r) {
			t.Fatalf("re-encoded entry: %q %+v %v; want %q %+v", op2, r2, err, op, r)
		}
	})
}

// TestJournalReadsVersion1Entries: a journal left by a build that wrote
// JSON entries is replayed by this one.
func TestJournalReadsVersion1Entries(t *testing.T) {
	r := Record{PresURI: "sip:alice@example.com", PresID: "p1", EventName: "presence", Flag: FlagUsrloc,
		ETag: "a.1", Expires: 1700000000, Body: []byte("<presence/>"), ExtraHeaders: []Header{{Name: "Sender", Value: "x"}},
		Removing: true, CSeq: 7}
	v1, err := json.Marshal(journalEntry{V: journalVersionJSON, Op: JournalPut, Rec: toJournalRec(r)})
	if err != nil {
		t.Fatal(err)
	}
	op, got, err := decodeJournalEntry(v1)
	if err != nil || op != JournalPut || !reflect.DeepEqual(got, r) {
		t.Fatalf("version 1 entry: %q %+v %v; want %+v", op, got, err, r)
	}
	bin, err := EncodeJournalEntry(JournalPut, r)
	if err != nil {
		t.Fatal(err)
	}
	if bin[0] != journalBinary || len(bin) >= len(v1) {
		t.Fatalf("the entry is not the binary one (%d bytes, JSON %d)", len(bin), len(v1))
	}
	// Every truncation of a binary entry is refused.
	for i := range len(bin) - 1 {
		if _, _, err := decodeJournalEntry(bin[:i]); err == nil {
			t.Fatalf("entry cut at %d of %d bytes decoded", i, len(bin))
		}
	}
	if _, _, err := decodeJournalEntry(append(bin[:len(bin):len(bin)], 0)); err == nil {
		t.Fatal("an entry with a byte after it decoded")
	}
}

// TestJournalReadsVersion2Entries: an entry of a build that wrote no
// Target is replayed by this one, with Target empty (not known).
func TestJournalReadsVersion2Entries(t *testing.T) {
	r := Record{PresURI: "sip:line1@example.com", PresID: "bla-1", EventName: "dialog;sla", Flag: FlagBLASubscribe,
		WatcherURI: "sip:line1@example.com", CallID: "c1", ToTag: "t1", FromTag: "f1", CSeq: 3,
		RemoteContact: "sip:phone@10.0.0.9:5062", Expires: 1700000000, Removing: true}
	v3, err := EncodeJournalEntry(JournalPut, r)
	if err != nil {
		t.Fatal(err)
	}
	// Version 2 is version 3 without Target: here its empty string (one
	// zero length byte) before the flags.
	if v3[len(v3)-2] != 0 {
		t.Fatalf("entry does not end with an empty Target and the flags: % x", v3[len(v3)-2:])
	}
	v2 := append([]byte{journalBinaryV2}, v3[1:len(v3)-2]...)
	v2 = append(v2, v3[len(v3)-1])
	op, got, err := decodeJournalEntry(v2)
	if err != nil || op != JournalPut || !reflect.DeepEqual(got, r) {
		t.Fatalf("version 2 entry: %q %+v %v; want %+v", op, got, err, r)
	}
	r.Target = "sip:line1@10.0.0.9:5062"
	v3, err = EncodeJournalEntry(JournalPut, r)
	if err != nil {
		t.Fatal(err)
	}
	if _, got, err := decodeJournalEntry(v3); err != nil || got.Target != r.Target {
		t.Fatalf("version 3 entry: target %q %v, want %q", got.Target, err, r.Target)
	}
}

func BenchmarkEncodeJournalEntry(b *testing.B) {
	r := Record{PresURI: "sip:alice@example.com", PresID: "dlg-1a2b3c", EventName: "dialog", Flag: FlagDialogPublish,
		ETag: "a.1700000000.12345.1", Expires: 1700000000, Body: make([]byte, 600), ContentType: "application/dialog-info+xml",
		TupleID: "t1", WatcherURI: "", ReqExpires: 3600}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeJournalEntry(JournalPut, r); err != nil {
			b.Fatal(err)
		}
	}
}
