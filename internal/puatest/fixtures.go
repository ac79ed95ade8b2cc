package puatest

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// ReadFile returns the file at the joined path, failing the test when it
// cannot be read.
func ReadFile(tb testing.TB, elem ...string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(elem...))
	if err != nil {
		tb.Fatalf("fixture: %v", err)
	}
	return b
}

// Testdata is ReadFile below the package's testdata directory.
func Testdata(tb testing.TB, name string) []byte {
	tb.Helper()
	return ReadFile(tb, "testdata", name)
}

// WireSIP turns a stored SIP message into the bytes on the wire: leading
// "#" comment lines dropped, every line ended by CRLF. Nothing else
// changes, so a captured message with a wrong Content-Length stays wrong.
func WireSIP(raw []byte) []byte {
	s := strings.ReplaceAll(string(raw), "\r\n", "\n")
	for strings.HasPrefix(s, "#") {
		_, s, _ = strings.Cut(s, "\n")
	}
	return []byte(strings.ReplaceAll(s, "\n", "\r\n"))
}

var contentLengthRE = regexp.MustCompile(`(?im)^(content-length|l)[ \t]*:.*$`)

// FixSIP is WireSIP for a hand-written message: it also sets
// Content-Length to the length of the body (adding the header if missing).
func FixSIP(raw []byte) []byte {
	s := strings.ReplaceAll(string(raw), "\r\n", "\n")
	for strings.HasPrefix(s, "#") {
		_, s, _ = strings.Cut(s, "\n")
	}
	head, body, _ := strings.Cut(s, "\n\n")
	body = strings.ReplaceAll(body, "\n", "\r\n")
	head = contentLengthRE.ReplaceAllString(head, "Content-Length: "+strconv.Itoa(len(body)))
	if !contentLengthRE.MatchString(head) {
		head += "\nContent-Length: " + strconv.Itoa(len(body))
	}
	return []byte(strings.ReplaceAll(head, "\n", "\r\n") + "\r\n\r\n" + body)
}

// ParseSIP parses wire bytes with sipgo, failing the test on an error.
func ParseSIP(tb testing.TB, b []byte) sip.Message {
	tb.Helper()
	m, err := sip.ParseMessage(b)
	if err != nil {
		tb.Fatalf("parse SIP: %v\n%s", err, b)
	}
	return m
}
