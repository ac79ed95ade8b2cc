package board

import (
	"strings"
	"testing"
)

// FuzzResumeFrom: any Last-Event-ID resumes from a version of this run or
// from a snapshot, never panics, and a well-formed id reads back.
func FuzzResumeFrom(f *testing.F) {
	for _, s := range []string{"", ".", "x.1", "abc.18446744073709551615", "abc.18446744073709551616", "abc.-1", " abc.7 ", "abc.7.8"} {
		f.Add(s)
	}
	b := New(Options{})
	b.epoch = "abc"
	f.Fuzz(func(t *testing.T, id string) {
		v := b.resumeFrom(id)
		if v != 0 && !strings.HasPrefix(strings.TrimSpace(id), "abc.") {
			t.Fatalf("%q resumed from %d", id, v)
		}
		if v != 0 && b.resumeFrom(b.eventID(v)) != v {
			t.Fatalf("%q: %d does not read back", id, v)
		}
	})
}
