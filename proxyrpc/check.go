package proxyrpc

import (
	"strings"
	"unicode/utf8"
)

// Bounds on the strings of a snapshot; longer values make their entry
// unreadable (SIP URIs, tags and Call-IDs are far shorter in practice).
const (
	maxURI   = 1024
	maxToken = 512
)

// placeholder is what Kamailio prints for an unset string field.
const placeholder = "[not set]"

// uriOK reports whether s can be a SIP URI or AoR taken from a snapshot.
func uriOK(s string) bool {
	return s != "" && len(s) <= maxURI && utf8.ValidString(s) && !strings.ContainsAny(s, " \t\r\n<>\"\x00")
}

// tokenOK reports whether s can be a Call-ID or tag.
func tokenOK(s string) bool {
	return s != "" && len(s) <= maxToken && utf8.ValidString(s) && !strings.ContainsAny(s, " \t\r\n\x00")
}

// optional returns s without Kamailio's placeholder, or "" when it is not
// printable text of at most maxURI bytes.
func optional(s string) string {
	if s == placeholder || len(s) > maxURI || !utf8.ValidString(s) || strings.ContainsAny(s, "\r\n\x00") {
		return ""
	}
	return s
}
