package pua

import (
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
