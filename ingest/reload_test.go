package ingest

import (
	"net/netip"
	"testing"
)

// TestSetTrustedSources replaces the trusted sources at run time; a bad
// list changes nothing.
func TestSetTrustedSources(t *testing.T) {
	cfg := testConfig()
	cfg.TrustedSources = []string{"10.0.0.0/8"}
	in, err := New(cfg, Handlers{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	if in.allowed(InputReplicate, lo) {
		t.Fatal("127.0.0.1 trusted before the reload")
	}
	if err := in.SetTrustedSources([]string{"127.0.0.0/8"}); err != nil {
		t.Fatal(err)
	}
	if !in.allowed(InputReplicate, lo) || in.allowed(InputReplicate, netip.MustParseAddr("10.1.2.3")) {
		t.Fatal("the new list is not applied")
	}
	if err := in.SetTrustedSources([]string{"127.0.0.0/8", "not-a-cidr"}); err == nil {
		t.Fatal("a bad list was accepted")
	}
	if !in.allowed(InputReplicate, lo) {
		t.Fatal("a bad list changed the trusted sources")
	}
}
