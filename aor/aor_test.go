package aor

import (
	"errors"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		in, dom, want string
		err           error
	}{
		{"sip:Alice@EXAMPLE.com:5060;transport=udp", "", "sip:Alice@example.com", nil},
		{"sips:alice@example.com", "", "sip:alice@example.com", nil},
		{"<sip:alice@example.com>", "", "sip:alice@example.com", nil},
		{"alice@Example.COM", "", "sip:alice@example.com", nil},
		{"alice", "pbx.example.com", "sip:alice@pbx.example.com", nil},
		{"alice", "", "", ErrNoDomain},
		{"sip:alice", "d.example", "sip:alice@d.example", nil},
		{"sip:alice@[2001:DB8::1]:5060", "", "sip:alice@[2001:db8::1]", nil},
		{"tel:+1555", "", "", ErrNotSIP},
		{"http://example.com", "", "", ErrNotSIP},
		{"sip:@example.com", "", "", ErrNoUser},
		{"", "x", "", ErrNoUser},
		{"@example.com", "x", "", ErrNoUser},
		{"sip:a b@example.com", "", "", ErrNoUser},
		{`"Line" <sip:100@example.com;transport=tcp>;expires=5`, "", "sip:100@example.com", nil},
		{"SIP:100@10.0.0.1:5100", "", "sip:100@10.0.0.1", nil},
		{"100@example.com:5060", "", "sip:100@example.com", nil},
		{"sip:100@example.com?Subject=x", "", "sip:100@example.com", nil},
	}
	for _, tc := range tests {
		got, err := Normalize(tc.in, tc.dom)
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("Normalize(%q, %q) = %q, %v; want %q, %v", tc.in, tc.dom, got, err, tc.want, tc.err)
		}
	}
}

// TestSpellingsOfOneLine: every way an operator or a registrar spells one
// line gives one AoR.
func TestSpellingsOfOneLine(t *testing.T) {
	for _, s := range []string{
		"sip:100@example.com", "sip:100@example.com:5060", "sips:100@example.com",
		"sip:100@EXAMPLE.COM", "sip:100@example.com;transport=tcp", "<sip:100@example.com:5060;transport=tcp>",
		"100@example.com", "100",
	} {
		if got, err := Normalize(s, "example.com"); got != "sip:100@example.com" || err != nil {
			t.Errorf("Normalize(%q) = %q, %v", s, got, err)
		}
	}
}

func TestParseKeepsSchemeAndPort(t *testing.T) {
	a, err := Parse("SIPS:100@PBX.example.com:5061;transport=tls", "")
	if err != nil {
		t.Fatal(err)
	}
	if a.String() != "sips:100@pbx.example.com:5061" || a.AoR() != "sip:100@pbx.example.com" {
		t.Errorf("got %q / %q", a.String(), a.AoR())
	}
	member, _ := Parse("sip:100@pbx.example.com", "")
	if !member.Matches(a) {
		t.Error("a member without a port must match every port")
	}
	if pinned, _ := Parse("sip:100@pbx.example.com:5070", ""); pinned.Matches(a) {
		t.Error("a member with a port must match that port only")
	}
}

func TestFromURI(t *testing.T) {
	var u sip.Uri
	if err := sip.ParseUri("sips:Bob@Example.COM:5061;transport=tls", &u); err != nil {
		t.Fatal(err)
	}
	if got, err := FromURI(&u); got != "sip:Bob@example.com" || err != nil {
		t.Errorf("FromURI = %q, %v", got, err)
	}
	if _, err := FromURI(nil); err == nil {
		t.Error("nil URI accepted")
	}
}

func TestAddrSpecAndKey(t *testing.T) {
	if got := AddrSpec(` "Bob" <sip:bob@h:5100;transport=tcp>;expires=5`); got != "sip:bob@h:5100;transport=tcp" {
		t.Errorf("AddrSpec = %q", got)
	}
	if Key("sips:100@Example.com:5060") != Key("sip:100@example.com") {
		t.Error("two spellings of one AoR give two keys")
	}
	if got := Key(" Alice "); got != "alice" {
		t.Errorf("Key of a bare user = %q", got)
	}
}

// TestEscapedUser: RFC 3261 §19.1.4: a user part compares equal to its
// %HH-escaped spelling, except for reserved characters, which stay
// escaped (with upper-case hex digits); a user with a broken escape is
// left as it is.
func TestEscapedUser(t *testing.T) {
	tests := []struct {
		in, want string
		err      error
	}{
		{"sip:al%69ce@example.com", "sip:alice@example.com", nil},
		{"sip:%61lice@Atlanta.COM;transport=TCP", "sip:alice@atlanta.com", nil},
		{"al%69ce", "sip:alice@example.com", nil},
		{"sip:%41lice@example.com", "sip:Alice@example.com", nil}, // the user keeps its case
		{"sip:%7e%2D%5f%2E%21%2a%27%28%29%30@example.com", "sip:~-_.!*'()0@example.com", nil},
		{"sip:alice%2bwork@example.com", "sip:alice%2Bwork@example.com", nil},
		{"sip:alice%2Bwork@example.com", "sip:alice%2Bwork@example.com", nil},
		{"sip:alice+work@example.com", "sip:alice+work@example.com", nil},
		{"sip:a%3ab%40c%3bd%3fe%2f%26%3d%24%2c@example.com", "sip:a%3Ab%40c%3Bd%3Fe%2F%26%3D%24%2C@example.com", nil},
		{"sip:a%20b%25c%22@example.com", "sip:a%20b%25c%22@example.com", nil},
		{"sip:%c3%a9mile@example.com", "sip:%C3%A9mile@example.com", nil},
		{"sip:a%zz%69@example.com", "sip:a%zz%69@example.com", nil},
		{"sip:%69a%4@example.com", "sip:%69a%4@example.com", nil},
		{"sip:%69%@example.com", "sip:%69%@example.com", nil},
	}
	for _, tc := range tests {
		got, err := Normalize(tc.in, "example.com")
		if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
			t.Errorf("Normalize(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	var u sip.Uri
	if err := sip.ParseUri("sip:al%69ce@example.com:5060", &u); err != nil {
		t.Fatal(err)
	}
	if got, err := FromURI(&u); got != "sip:alice@example.com" || err != nil {
		t.Errorf("FromURI = %q, %v", got, err)
	}
	member, _ := Parse("sip:alice@example.com", "")
	if phone, err := Parse("sip:al%69ce@example.com:5070", ""); err != nil || !member.Matches(phone) {
		t.Errorf("an escaped spelling of the member does not match it: %+v, %v", phone, err)
	}
	if Key("sips:al%69ce@Example.com") != Key("alice@example.com") {
		t.Error("an escaped spelling gives another key")
	}
}
