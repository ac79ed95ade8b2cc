package trusted

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestLimiterBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := NewLimiter(time.Minute)
	if !l.Allow("a", now) {
		t.Error("first: refused")
	}
	if l.Allow("a", now) {
		t.Error("again: allowed")
	}
	now = now.Add(time.Minute)
	if !l.Allow("a", now) {
		t.Error("after a minute: refused")
	}
	for i := 0; i < 2*MaxKeys; i++ {
		l.Allow(strings.Repeat("k", i%50)+string(rune('a'+i%26))+time.Duration(i).String(), now)
	}
	if len(l.last) > MaxKeys {
		t.Fatalf("limiter holds %d keys", len(l.last))
	}
}

func TestParse(t *testing.T) {
	got, err := Parse([]string{" 10.1.2.3/8 ", "192.0.2.7", "::ffff:192.0.2.8", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"),
		netip.MustParsePrefix("192.0.2.8/32"), netip.MustParsePrefix("2001:db8::/32")}
	if len(got) != len(want) {
		t.Fatalf("Parse = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Parse[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	if _, err := Parse([]string{"10.0.0.0/8", "example.com"}); err == nil {
		t.Error("a host name accepted")
	}
}
