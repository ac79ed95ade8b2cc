// Package sipwrite appends parsed sipgo headers and URIs to a byte slice
// exactly as sipgo's own StringWrite methods write them, without the
// allocations those make (a strings.Builder per value, a string per
// parameter list, an IP parse error per host name).
package sipwrite

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// AppendURI appends u as sip.Uri.StringWrite writes it.
func AppendURI(b []byte, u *sip.Uri) []byte {
	if u.Scheme == "" {
		b = append(b, "sip"...)
	} else {
		b = append(b, u.Scheme...)
	}
	b = append(b, ':')
	if raw := u.Raw(); raw != "" {
		return append(b, raw...)
	}
	if u.HierarhicalSlashes {
		b = append(b, "//"...)
	}
	if u.User != "" {
		b = append(b, u.User...)
		if u.Password != "" {
			b = append(b, ':')
			b = append(b, u.Password...)
		}
		b = append(b, '@')
	}
	b = AppendHost(b, u.Host)
	if u.Port > 0 {
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(u.Port), 10)
	}
	if len(u.UriParams) > 0 {
		b = append(b, ';')
		b = AppendParams(b, u.UriParams, ';')
	}
	if len(u.Headers) > 0 {
		b = append(b, '?')
		b = AppendParams(b, u.Headers, '&')
	}
	return b
}

// URILen is the length of u as AppendURI writes it.
func URILen(u *sip.Uri) int {
	var scratch [256]byte
	return len(AppendURI(scratch[:0], u))
}

// AppendHost appends a host as sipgo writes it: an IPv6 address in
// brackets, anything else as it is.
func AppendHost(b []byte, host string) []byte {
	if isIPv6(host) {
		b = append(b, '[')
		b = append(b, host...)
		return append(b, ']')
	}
	return append(b, host...)
}

// isIPv6 is sipgo's test for a host to bracket: a textual IPv6 address
// (no zone, not an IPv4-mapped one) of at most 46 bytes. Only a host of
// hex digits, ':' and '.' with a ':' is parsed (a host name, or one in
// brackets already, costs no parse error).
func isIPv6(host string) bool {
	if len(host) > 46 || strings.IndexByte(host, ':') < 0 {
		return false
	}
	for i := 0; i < len(host); i++ {
		switch c := host[i]; {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F', c == ':', c == '.':
		default:
			return false
		}
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Zone() == "" && a.Is6() && !a.Is4In6()
}

// AppendParams appends params joined by sep as
// sip.HeaderParams.ToStringWrite writes them: a value holding a blank is
// quoted.
func AppendParams(b []byte, hp sip.HeaderParams, sep byte) []byte {
	for i, kv := range hp {
		if i > 0 {
			b = append(b, sep)
		}
		b = append(b, kv.K...)
		switch {
		case kv.V == "":
		case strings.ContainsAny(kv.V, " \t"):
			b = append(b, `="`...)
			b = append(b, kv.V...)
			b = append(b, '"')
		default:
			b = append(b, '=')
			b = append(b, kv.V...)
		}
	}
	return b
}

// AppendNameAddr appends the value of a From or To header:
// ["display" ]<uri>[;params].
func AppendNameAddr(b []byte, display string, u *sip.Uri, params sip.HeaderParams) []byte {
	if display != "" {
		b = append(b, '"')
		b = append(b, display...)
		b = append(b, `" `...)
	}
	b = append(b, '<')
	b = AppendURI(b, u)
	b = append(b, '>')
	if len(params) > 0 {
		b = append(b, ';')
		b = AppendParams(b, params, ';')
	}
	return b
}

// AppendViaValue appends the value of a Via header as
// sip.ViaHeader.Value gives it, with params in place of h.Params.
func AppendViaValue(b []byte, h *sip.ViaHeader, params sip.HeaderParams) []byte {
	b = append(b, h.ProtocolName...)
	b = append(b, '/')
	b = append(b, h.ProtocolVersion...)
	b = append(b, '/')
	b = append(b, h.Transport...)
	b = append(b, ' ')
	b = AppendHost(b, h.Host)
	if h.Port > 0 {
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(h.Port), 10)
	}
	if len(params) > 0 {
		b = append(b, ';')
		b = AppendParams(b, params, ';')
	}
	return b
}

// SameName reports whether two header names are equal as sipgo compares
// them (sip.HeaderToLower of both): ASCII letters without case, every other
// byte exactly.
func SameName(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
