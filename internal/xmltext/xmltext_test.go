package xmltext

import (
	"bytes"
	"encoding/xml"
	"testing"
)

// FuzzEscape: Escape writes what xml.EscapeText writes, for any string
// (its plain path included).
func FuzzEscape(f *testing.F) {
	for _, s := range []string{"", "sip:alice@example.com", "sip:a\"b<c>&d'", "t\tn\nr\r", "\x7f\x00", "héllo", "\xff\xfe", "a]]>b", "~ !#$%()*+,-./:;=?@[\\]^_`{|}",
		// each character to escape alone in plain text
		"a&b", "a<b", "a>b", "a'b", "a\"b", "a\tb", "a\nb", "a\rb", "a\x01b", "a\x7fb", "aéb",
		// dialogdoc's cases, from when it had an escape of its own
		"<x>", "tab\there", "line\nbreak", "cr\r", "\x00nul", "\x7fdel", "é", "\xff", "~}|{"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var got, want bytes.Buffer
		Escape(&got, s)
		_ = xml.EscapeText(&want, []byte(s))
		if got.String() != want.String() {
			t.Fatalf("Escape(%q) = %q, xml.EscapeText gives %q", s, got.String(), want.String())
		}
	})
}

// BenchmarkEscape measures the escape of a typical value, a contact URI.
func BenchmarkEscape(b *testing.B) {
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		Escape(&buf, "sip:user0001@127.0.0.1:5111;transport=udp")
	}
}
