package aor

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/emiago/sipgo/sip"
)

// MaxLen is the longest address accepted, in bytes.
const MaxLen = 512

// Reasons an address is refused. Callers test them with errors.Is.
var (
	// ErrNotSIP is an address with another scheme (tel:, http:).
	ErrNotSIP = errors.New("not a sip or sips URI")
	// ErrNoUser is an address without a usable user part, or one that is
	// malformed (spaces, control characters, angle brackets, too long).
	ErrNoUser = errors.New("no usable user part")
	// ErrNoDomain is an address without a host when there is no default
	// domain.
	ErrNoDomain = errors.New("no domain and no default domain")
)

// Address is a SIP address reduced to the parts that name a user at a host.
type Address struct {
	// Secure is true for a sips: URI.
	Secure bool
	// User keeps its case; its %HH escapes are normalised (see
	// normalUser).
	User string
	// Host is lowercased; an IPv6 host keeps its brackets.
	Host string
	// Port is 0 when the URI has none.
	Port int
}

// AoR is the address of record: "sip:user@host".
func (a Address) AoR() string { return "sip:" + a.User + "@" + a.Host }

// String renders the address with its scheme and port:
// "sips:user@host:5061".
func (a Address) String() string {
	s := "sip:"
	if a.Secure {
		s = "sips:"
	}
	s += a.User + "@" + a.Host
	if a.Port != 0 {
		s += ":" + strconv.Itoa(a.Port)
	}
	return s
}

// Matches reports whether b is at a: same user, same host, and same port
// when a has one (a member "sip:100@pbx" matches every port of that host).
func (a Address) Matches(b Address) bool {
	return a.User == b.User && a.Host == b.Host && (a.Port == 0 || a.Port == b.Port)
}

// Normalize returns the AoR of s: "100", "100@Example.com",
// `"Line" <sips:100@example.com:5061;transport=tls>` all give
// "sip:100@example.com" (with defaultDomain "example.com" for the first).
func Normalize(s, defaultDomain string) (string, error) {
	a, err := Parse(s, defaultDomain)
	if err != nil {
		return "", err
	}
	return a.AoR(), nil
}

// Parse reads a SIP address: a bare user, user@host, a sip:/sips: URI or a
// name-addr with a display name and angle brackets. A URI without '@'
// ("sip:100") names a user, as a bare "100" does, and gets defaultDomain.
func Parse(s, defaultDomain string) (Address, error) {
	if len(s) > MaxLen {
		return Address{}, fmt.Errorf("%w: longer than %d bytes", ErrNoUser, MaxLen)
	}
	s = AddrSpec(s)
	if i := strings.IndexAny(s, ";?"); i >= 0 {
		s = s[:i]
	}
	if s == "" {
		return Address{}, fmt.Errorf("%w: empty", ErrNoUser)
	}
	scheme, rest, ok := splitScheme(s)
	if !ok {
		scheme, rest = "sip", s
	}
	if scheme != "sip" && scheme != "sips" {
		return Address{}, fmt.Errorf("%w: %q", ErrNotSIP, s)
	}
	if !strings.Contains(rest, "@") {
		if defaultDomain == "" {
			return Address{}, fmt.Errorf("%w: %q", ErrNoDomain, s)
		}
		rest += "@" + defaultDomain
	}
	var u sip.Uri
	if err := sip.ParseUri(scheme+":"+rest, &u); err != nil {
		return Address{}, fmt.Errorf("%w: %q: %v", ErrNoUser, s, err)
	}
	return fromParsed(&u)
}

// FromURI returns the AoR of a parsed URI (a To, From or Request-URI).
func FromURI(u *sip.Uri) (string, error) {
	if u == nil {
		return "", fmt.Errorf("%w: no URI", ErrNoUser)
	}
	a, err := fromParsed(u)
	if err != nil {
		return "", err
	}
	return a.AoR(), nil
}

// fromParsed checks and reduces a URI parsed by sipgo.
func fromParsed(u *sip.Uri) (Address, error) {
	scheme := strings.ToLower(u.Scheme)
	if scheme != "sip" && scheme != "sips" {
		return Address{}, fmt.Errorf("%w: scheme %q", ErrNotSIP, u.Scheme)
	}
	if u.HierarhicalSlashes {
		return Address{}, fmt.Errorf("%w: \"//\" after the scheme", ErrNoUser)
	}
	a := Address{Secure: scheme == "sips", User: normalUser(u.User), Host: strings.ToLower(u.Host), Port: u.Port}
	if a.User == "" || !usable(a.User) || strings.ContainsRune(a.User, ':') {
		return Address{}, fmt.Errorf("%w: user %q", ErrNoUser, a.User)
	}
	if a.Host == "" || a.Host == "*" || u.Wildcard {
		return Address{}, fmt.Errorf("%w: no host", ErrNoDomain)
	}
	if !usable(a.Host) || !hostChars(a.Host) {
		return Address{}, fmt.Errorf("%w: host %q", ErrNoUser, a.Host)
	}
	if len(a.AoR()) > MaxLen {
		return Address{}, fmt.Errorf("%w: longer than %d bytes", ErrNoUser, MaxLen)
	}
	return a, nil
}

// normalUser is the user part s with its %HH escapes normalised, so that
// every spelling of one user gives one string (RFC 3261 §19.1.4: an
// unreserved character and its escape are equal, a reserved character and
// its escape are not): the escape of an unreserved character (letter,
// digit, one of -_.!~*'()) is written as the character itself, any other
// escape with upper-case hex digits. A user with a '%' that starts no
// escape is not a valid one and is left as it is.
func normalUser(s string) string {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b = append(b, c)
			continue
		}
		if i+2 >= len(s) {
			return s
		}
		h, l := unhex(s[i+1]), unhex(s[i+2])
		if h < 0 || l < 0 {
			return s
		}
		if d := byte(h<<4 | l); unreserved(d) {
			b = append(b, d)
		} else {
			b = append(b, '%', hex[h], hex[l])
		}
		i += 2
	}
	return string(b)
}

// unreserved reports whether c is an RFC 3261 unreserved character
// (alphanum / mark).
func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.!~*'()", c) >= 0
}

// Unescape decodes every %HH escape of a URI part (a user); it reports
// false for a '%' that starts no escape.
func Unescape(s string) (string, bool) {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s, true
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		h, l := unhex(s[i+1]), unhex(s[i+2])
		if h < 0 || l < 0 {
			return "", false
		}
		b = append(b, byte(h<<4|l))
		i += 2
	}
	return string(b), true
}

// unhex is the value of the hex digit c, -1 when it is none.
func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// usable reports whether s can be part of an AoR: valid UTF-8, no spaces,
// control characters, quotes, angle brackets, '@', ';' or '?'.
func usable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r == 0x7f || r == '<' || r == '>' || r == '"' || r == '@' || r == ';' || r == '?'
	})
}

// hostChars reports whether h is printable ASCII, with brackets only around
// an IPv6 address.
func hostChars(h string) bool {
	if strings.HasPrefix(h, "[") {
		if !strings.HasSuffix(h, "]") || len(h) < 3 {
			return false
		}
		for _, r := range h[1 : len(h)-1] {
			if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r == ':' || r == '.') {
				return false
			}
		}
		return true
	}
	for _, r := range h {
		if r < '!' || r > '~' || r == '[' || r == ']' || r == ':' {
			return false
		}
	}
	return true
}

// splitScheme splits "scheme:rest" when s starts with a URI scheme before
// any '@' ("tel:+1", "sip:100@h"); "100@h:5060" has none.
func splitScheme(s string) (scheme, rest string, ok bool) {
	i := strings.IndexByte(s, ':')
	if i <= 0 || strings.Contains(s[:i], "@") {
		return "", s, false
	}
	for _, r := range s[:i] {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return "", s, false
		}
	}
	return strings.ToLower(s[:i]), s[i+1:], true
}

// AddrSpec removes the display name and angle brackets of a name-addr
// (and the header parameters after them), keeping URI parameters:
// `"Bob" <sip:bob@h:5100;transport=tcp>;expires=5` gives
// "sip:bob@h:5100;transport=tcp". A bare URI is returned trimmed.
func AddrSpec(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '<'); i >= 0 {
		if j := strings.IndexByte(s[i:], '>'); j >= 0 {
			return strings.TrimSpace(s[i+1 : i+j])
		}
		return strings.TrimSpace(s[i+1:])
	}
	return s
}

// Key is the ordering key of an address: its AoR when it has one, the
// trimmed, lowercased text otherwise (a bare user without a domain), so
// that every spelling of one AoR gives one key.
func Key(s string) string {
	if a, err := Normalize(s, ""); err == nil {
		return a
	}
	return strings.ToLower(AddrSpec(s))
}

// KeyOfURI is Key for a parsed URI (the To of a REGISTER copy).
func KeyOfURI(u *sip.Uri) string {
	if a, err := FromURI(u); err == nil {
		return a
	}
	if u == nil {
		return ""
	}
	return strings.ToLower(u.User + "@" + u.Host)
}

// Domain is the host of an AoR produced by this package ("sip:user@host"
// gives "host"); "" when it has none.
func Domain(a string) string {
	if i := strings.LastIndexByte(a, '@'); i >= 0 {
		return strings.ToLower(a[i+1:])
	}
	return ""
}
