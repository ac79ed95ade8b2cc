package pua

import (
	"bytes"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Almost every datagram the UDP tap hands to a transaction is a 200 to one
// of the engine's PUBLISHes, of which the engine reads the status line,
// the top Via's branch, CSeq, SIP-ETag and Expires. sipgo's parser builds
// a struct for every header (Via, From, To, Contact, ...); the lean parser
// below reads only those fields, from one copy of the header section.
//
// It is strict: a datagram in any form it does not fully understand is
// declined, and the tap parses it with sipgo's parser instead. It takes
// only a final 2xx whose CSeq method is PUBLISH, with CRLF lines, no
// folding, one Via per header line (any number of lines; the first is the
// top one), "CSeq: number PUBLISH", a Content-Length of 0 and nothing after
// the header section. Headers sipgo parses but the engine does not read
// are checked against the forms sipgo accepts (From and To) or make it
// decline (Contact, Content-Type, Route, ...), so that a datagram it
// accepts is one sipgo's parser accepts too, with the same values for what
// the engine reads (FuzzLeanPublishResponse).

// leanResponse holds, in one allocation, the typed headers of a response
// read by leanPublishResponse.
type leanResponse struct {
	via    sip.ViaHeader
	params [4]sip.HeaderKV // backing array of via.Params
	cseq   sip.CSeqHeader
	callID sip.CallIDHeader
}

// leanPublishResponse parses d, a UDP datagram, when it is a final 2xx
// response to a PUBLISH in the plain form described above. The response
// carries the status line, every Via (the top one as res.Via()), CSeq,
// Call-ID, SIP-ETag and Expires, built as sipgo's parser builds them; it
// has no other header and no body. false: d is not such a response, or
// not in a form read here.
func leanPublishResponse(d []byte) (*sip.Response, bool) {
	if len(d) > sip.ParseMaxMessageLength || !bytes.HasPrefix(d, []byte("SIP/2.0 2")) {
		return nil, false
	}
	// The values below are substrings of this copy, which is the header
	// section: there is to be nothing after it.
	line, rest, ok := leanLine(string(d))
	if !ok {
		return nil, false
	}
	code, reason, ok := leanStatusLine(line)
	if !ok {
		return nil, false
	}
	res := sip.NewResponse(code, reason)
	lr := &leanResponse{}
	var have struct{ via, cseq, callID, length, from, to, etag, expires bool }
	for {
		if line, rest, ok = leanLine(rest); !ok {
			return nil, false
		}
		if line == "" {
			break // the end of the header section
		}
		if line[0] == ' ' || line[0] == '\t' {
			return nil, false // folded
		}
		colon := strings.IndexByte(line, ':')
		if colon < 0 {
			return nil, false
		}
		name, value := trimBlanks(line[:colon]), trimBlanks(line[colon+1:])
		if !isLeanToken(name) {
			return nil, false
		}
		var seen *bool
		switch {
		case asciiFold(name, "via") || asciiFold(name, "v"):
			if !have.via {
				have.via = true
				lr.via.Params = lr.params[:0]
				if !leanVia(value, &lr.via) {
					return nil, false
				}
				res.AppendHeader(&lr.via)
				continue
			}
			// A lower Via: the engine reads only the top one, but sipgo's
			// parser would refuse a malformed one.
			v := &sip.ViaHeader{}
			if !leanVia(value, v) {
				return nil, false
			}
			res.AppendHeader(v)
			continue
		case asciiFold(name, "cseq"):
			seen = &have.cseq
			if !leanCSeq(value, &lr.cseq) {
				return nil, false
			}
			res.AppendHeader(&lr.cseq)
		case asciiFold(name, "call-id") || asciiFold(name, "i"):
			seen = &have.callID
			if value == "" || !isVisible(value) {
				return nil, false
			}
			lr.callID = sip.CallIDHeader(value)
			res.AppendHeader(&lr.callID)
		case asciiFold(name, "content-length") || asciiFold(name, "l"):
			seen = &have.length
			if value == "" || len(value) > 10 || strings.Trim(value, "0") != "" {
				return nil, false // not 0: a body
			}
		case asciiFold(name, "from") || asciiFold(name, "f"):
			seen = &have.from
			if !leanNameAddr(value) {
				return nil, false
			}
		case asciiFold(name, "to") || asciiFold(name, "t"):
			seen = &have.to
			if !leanNameAddr(value) {
				return nil, false
			}
		case asciiFold(name, "sip-etag"):
			seen = &have.etag
			if !isText(value) {
				return nil, false
			}
			res.AppendHeader(sip.NewHeader(name, value))
		case asciiFold(name, "expires"):
			seen = &have.expires
			if !isText(value) {
				return nil, false
			}
			res.AppendHeader(sip.NewHeader(name, value))
		case leanDeclined(name):
			return nil, false
		default:
			continue // not read by the engine, nor parsed by sipgo
		}
		if *seen {
			return nil, false // repeated
		}
		*seen = true
	}
	if rest != "" || !have.via || !have.cseq || !have.length {
		return nil, false // a body or bytes after the header section; no Via, CSeq or Content-Length
	}
	return res, true
}

// leanDeclined reports whether name (a token) is a header sipgo's parser
// parses into a struct, other than those leanPublishResponse reads or
// checks: a response carrying one is left to sipgo's parser.
func leanDeclined(name string) bool {
	for _, n := range [...]string{"content-type", "c", "contact", "m", "max-forwards",
		"route", "record-route", "refer-to", "referred-by"} {
		if asciiFold(name, n) {
			return true
		}
	}
	return false
}

// leanLine cuts the first CRLF-terminated line of s; false for a CR not
// followed by LF, or no CR at all.
func leanLine(s string) (line, rest string, ok bool) {
	i := strings.IndexByte(s, '\r')
	if i < 0 || i+1 >= len(s) || s[i+1] != '\n' {
		return "", "", false
	}
	return s[:i], s[i+2:], true
}

// leanStatusLine reads "SIP/2.0 2xx reason".
func leanStatusLine(line string) (int, string, bool) {
	st := line[len("SIP/2.0 "):]
	if len(st) < 4 || st[0] != '2' || !isDigit(st[1]) || !isDigit(st[2]) || st[3] != ' ' {
		return 0, "", false
	}
	reason := st[4:]
	for i := 0; i < len(reason); i++ {
		if c := reason[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return 0, "", false
		}
	}
	// sipgo takes a status line whose reason is one word starting with
	// "sip" for a request line.
	if len(reason) >= 3 && strings.IndexByte(reason, ' ') < 0 && sip.UriIsSIP(reason[:3]) {
		return 0, "", false
	}
	return 200 + int(st[1]-'0')*10 + int(st[2]-'0'), reason, true
}

// leanCSeq reads "number SP PUBLISH" (or HTAB) into h.
func leanCSeq(v string, h *sip.CSeqHeader) bool {
	i := indexAny(v, " \t")
	if i < 1 || i > 10 || v[i+1:] != string(sip.PUBLISH) {
		return false
	}
	n := uint64(0)
	for j := 0; j < i; j++ {
		if !isDigit(v[j]) {
			return false
		}
		n = n*10 + uint64(v[j]-'0')
	}
	if n > 1<<31-1 {
		return false
	}
	h.SeqNo, h.MethodName = uint32(n), sip.PUBLISH
	return true
}

// leanVia reads one via-parm into h: "proto/version/transport SP host
// [:port] *(;param)" with a non-empty branch, no blanks but the one after
// the transport, no comma, no quotes, no repeated parameter.
func leanVia(v string, h *sip.ViaHeader) bool {
	var ok bool
	if h.ProtocolName, v, ok = cutToken(v, '/'); !ok {
		return false
	}
	if h.ProtocolVersion, v, ok = cutToken(v, '/'); !ok {
		return false
	}
	i := indexAny(v, " \t")
	if i < 1 || !isLeanToken(v[:i]) {
		return false
	}
	h.Transport, v = v[:i], v[i+1:]
	var hostport string
	if i := strings.IndexByte(v, ';'); i >= 0 {
		hostport, v = v[:i], v[i:]
	} else {
		return false // no branch
	}
	port := ""
	if strings.HasPrefix(hostport, "[") {
		j := strings.IndexByte(hostport, ']')
		if j < 2 || !isIPv6Chars(hostport[1:j]) {
			return false
		}
		h.Host = hostport[1:j]
		switch rest := hostport[j+1:]; {
		case rest == "":
		case rest[0] == ':':
			port = rest[1:]
			if port == "" {
				return false
			}
		default:
			return false
		}
	} else {
		host := hostport
		if j := strings.IndexByte(hostport, ':'); j >= 0 {
			host, port = hostport[:j], hostport[j+1:]
			if port == "" {
				return false
			}
		}
		if !isHostname(host) {
			return false
		}
		h.Host = host
	}
	h.Port = 0
	if port != "" {
		p, ok := leanPort(port)
		if !ok {
			return false
		}
		h.Port = p
	}
	branch := false
	for v != "" {
		// v starts with ';'
		p := v[1:]
		if i := strings.IndexByte(p, ';'); i >= 0 {
			p, v = p[:i], p[i:]
		} else {
			v = ""
		}
		key, val, _ := strings.Cut(p, "=")
		if !isLeanToken(key) || !isParamValue(val) || h.Params.Has(key) {
			return false
		}
		if key == "branch" {
			if val == "" {
				return false
			}
			branch = true
		}
		h.Params = append(h.Params, sip.HeaderKV{K: key, V: val})
	}
	return branch
}

// leanNameAddr reports whether v is a From or To value sipgo's parser
// takes: [display-name] "<" SIP or SIPS URI ">" and anything after (its
// parameters, which sipgo's parser never refuses). The URI has a host name
// or IPv4 address (no IPv6 reference), a port of digits if any, and only
// visible characters.
func leanNameAddr(v string) bool {
	i := indexAny(v, "\"<;")
	if i < 0 {
		return false
	}
	switch v[i] {
	case ';':
		return false // a URI without angle brackets
	case '"':
		q := v[i+1:]
		j := strings.IndexByte(q, '"')
		if j < 0 || strings.IndexByte(q[:j], '\\') >= 0 {
			return false
		}
		q = q[j+1:]
		k := indexAny(q, "<;")
		if k < 0 || q[k] != '<' {
			return false
		}
		v = q[k:]
	default:
		v = v[i:]
	}
	// v starts with '<'
	j := strings.IndexByte(v, '>')
	if j < 0 {
		return false
	}
	return leanSIPURI(v[1:j])
}

// leanSIPURI reports whether u is a "sip:" or "sips:" URI (any case) with a
// host name or IPv4 host, of visible characters but no brackets or quotes.
func leanSIPURI(u string) bool {
	scheme, r, ok := strings.Cut(u, ":")
	if !ok || !(asciiFold(scheme, "sip") || asciiFold(scheme, "sips")) {
		return false
	}
	for k := 0; k < len(r); k++ {
		switch c := r[k]; {
		case c < 0x21 || c > 0x7e, c == '[', c == ']', c == '<', c == '>', c == '"':
			return false
		}
	}
	r = strings.TrimPrefix(r, "//")
	if _, after, found := strings.Cut(r, "@"); found {
		r = after
	}
	host, port := r, ""
	if i := indexAny(r, ":;?"); i >= 0 {
		host = r[:i]
		if r[i] == ':' {
			port = r[i+1:]
			if k := indexAny(port, ";?"); k >= 0 {
				port = port[:k]
			}
			if _, ok := leanPort(port); !ok {
				return false
			}
		}
	}
	return isHostname(host)
}

// leanPort reads a port of one to five digits, at most 65535.
func leanPort(s string) (int, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, n <= 65535
}

// cutToken cuts the token before sep from s.
func cutToken(s string, sep byte) (tok, rest string, ok bool) {
	i := strings.IndexByte(s, sep)
	if i < 1 || !isLeanToken(s[:i]) {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

// asciiFold reports whether s is lower in any case of ASCII letters only
// (strings.EqualFold would also fold some non-ASCII letters to ASCII ones,
// which sipgo does not).
func asciiFold(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// trimBlanks trims spaces and horizontal tabs.
func trimBlanks(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// indexAny is strings.IndexAny for a few ASCII characters, without the
// set strings.IndexAny builds on each call.
func indexAny(s, chars string) int {
	for i := 0; i < len(s); i++ {
		for j := 0; j < len(chars); j++ {
			if s[i] == chars[j] {
				return i
			}
		}
	}
	return -1
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isLeanToken reports whether s is a non-empty RFC 3261 token.
func isLeanToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return s != ""
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', isDigit(c):
		return true
	}
	switch c {
	case '-', '.', '!', '%', '*', '_', '+', '`', '\'', '~':
		return true
	}
	return false
}

// isParamValue reports whether s (possibly empty) is a Via parameter value
// read here: token characters, and the colons and brackets of an IPv6
// address.
func isParamValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isTokenChar(c) && c != ':' && c != '[' && c != ']' {
			return false
		}
	}
	return true
}

// isHostname reports whether s is a non-empty host name or IPv4 address.
func isHostname(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', isDigit(c), c == '-', c == '.':
		default:
			return false
		}
	}
	return s != ""
}

// isIPv6Chars reports whether s holds only the characters of an IPv6
// address (hex digits, colons, dots).
func isIPv6Chars(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case isDigit(c), c >= 'a' && c <= 'f', c >= 'A' && c <= 'F', c == ':', c == '.':
		default:
			return false
		}
	}
	return s != ""
}

// isVisible reports whether s is printable ASCII without blanks.
func isVisible(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// isText reports whether s is printable ASCII, blanks included.
func isText(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c > 0x7e {
			return false
		}
	}
	return true
}
