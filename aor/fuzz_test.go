package aor

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzNormalize: no input panics, and every AoR produced is itself a
// fixed point of the rule (normalising it again gives it back).
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"100", "sip:100@example.com:5060", "sips:100@example.com", "<sip:a@[::1]:5>;x",
		"tel:+1", "sip:", "@", "sip:a@b?c=d", "sip:al%69ce@example.com", "%%341", "sip:a%2b%3A%c3%a9@h"} {
		f.Add(s, "example.com")
	}
	f.Fuzz(func(t *testing.T, s, dom string) {
		got, err := Normalize(s, dom)
		if err != nil {
			return
		}
		if !strings.HasPrefix(got, "sip:") || len(got) > 2*MaxLen {
			t.Fatalf("Normalize(%q, %q) = %q", s, dom, got)
		}
		again, err := Normalize(got, "")
		if err != nil || again != got {
			t.Fatalf("Normalize(%q) = %q, %v; not a fixed point of %q", got, again, err, s)
		}
		_ = Key(s)
	})
}

// FuzzUnescape: no input panics; a decoded string has no more bytes than
// its input, and an input without '%' is its own decoding; the decoding
// agrees with net/url's of a path segment.
func FuzzUnescape(f *testing.F) {
	for _, s := range []string{"alice", "al%69ce", "a%2B%2b", "%", "%4", "%zz", "%%341", "%c3%a9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := Unescape(s)
		want, err := url.PathUnescape(s)
		if ok != (err == nil) || ok && got != want {
			t.Fatalf("Unescape(%q) = %q, %v; net/url: %q, %v", s, got, ok, want, err)
		}
		if ok && len(got) > len(s) || !strings.Contains(s, "%") && (!ok || got != s) {
			t.Fatalf("Unescape(%q) = %q, %v", s, got, ok)
		}
	})
}
