package aor

import (
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
