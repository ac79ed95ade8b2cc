package ingest

import (
	"bytes"
	"strconv"

	"github.com/emiago/sipgo/sip"
)

// A siptrace or HEP capture agent sends most messages twice (as received
// and as forwarded by the proxy). The second copy is a duplicate, so its
// full parse is wasted: prescan reads only the identity fields of a copy
// from its raw bytes, so that a copy whose identity is already recorded is
// counted as a duplicate without being parsed. It is strict: anything but
// the plain forms Kamailio forwards (CRLF lines, no folding, no compact or
// repeated identity headers, From and To in angle brackets with token
// parameters, "CSeq: number METHOD") makes it give up, and the copy takes
// the full path, whose dedup is the authority (prescan never records a
// key). Where both succeed they agree (FuzzPrescan).

// prescanKey returns the identity fields of a raw SIP message, or false
// when the message is not in the plain form prescan reads.
func prescanKey(b []byte) (keyFields, bool) {
	var f keyFields
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return f, false
	}
	head := b[:end+2] // every line ends in CRLF
	line, head, ok := nextLine(head)
	if !ok || !startLine(line, &f) {
		return f, false
	}
	var have struct{ via, cid, cseq, from, to bool }
	for len(head) > 0 {
		if line, head, ok = nextLine(head); !ok || len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			return f, false // folded or malformed
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return f, false
		}
		name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
		if !isToken(name) {
			return f, false
		}
		var seen *bool
		switch {
		case len(name) == 1:
			// A compact form of an identity header (i, f, t, v, ...) is
			// left to the full parse.
			switch name[0] | 0x20 {
			case 'i', 'f', 't', 'v':
				return f, false
			}
			continue
		case bytes.EqualFold(name, []byte("Via")):
			have.via = true
			if keyVias(f.status) {
				// Via entries counted by line: a list in one line is
				// left to the full parse.
				if bytes.IndexByte(value, ',') >= 0 {
					return f, false
				}
				f.vias++
			}
			continue
		case bytes.EqualFold(name, []byte("Call-ID")):
			seen = &have.cid
			if len(value) == 0 || !isVisible(value) {
				return f, false
			}
			f.callID = string(value)
		case bytes.EqualFold(name, []byte("CSeq")):
			seen = &have.cseq
			if !cseqValue(value, &f) {
				return f, false
			}
		case bytes.EqualFold(name, []byte("From")):
			seen = &have.from
			if f.fromTag, ok = tagOf(value); !ok {
				return f, false
			}
		case bytes.EqualFold(name, []byte("To")):
			seen = &have.to
			if f.toTag, ok = tagOf(value); !ok {
				return f, false
			}
		default:
			continue
		}
		if *seen {
			return f, false // repeated identity header
		}
		*seen = true
	}
	if !have.via || !have.cid || !have.cseq || !have.from || !have.to {
		return f, false
	}
	if f.status == 0 && f.reqMethod != f.cseqMethod {
		return f, false
	}
	return f, true
}

// nextLine cuts the first CRLF-terminated line of b; false for a bare LF
// or CR.
func nextLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' || bytes.IndexByte(b[:i-1], '\r') >= 0 {
		return nil, nil, false
	}
	return b[:i-1], b[i+1:], true
}

// startLine reads "METHOD SP URI SP SIP/2.0" or "SIP/2.0 SP code SP reason".
func startLine(line []byte, f *keyFields) bool {
	if rest, ok := bytes.CutPrefix(line, []byte("SIP/2.0 ")); ok {
		if len(rest) < 4 || rest[3] != ' ' || !isDigits(rest[:3]) || rest[0] == '0' {
			return false
		}
		f.status = int(rest[0]-'0')*100 + int(rest[1]-'0')*10 + int(rest[2]-'0')
		return true
	}
	sp := bytes.IndexByte(line, ' ')
	if sp < 1 || !isUpper(line[:sp]) {
		return false
	}
	uri, ok := bytes.CutSuffix(line[sp+1:], []byte(" SIP/2.0"))
	if !ok || len(uri) == 0 || bytes.ContainsAny(uri, " \t") {
		return false
	}
	f.reqMethod = methodString(line[:sp])
	return true
}

// methodString returns b as a string, without allocating for the methods
// of RFC 3261 and its extensions.
func methodString(b []byte) string {
	for _, m := range []sip.RequestMethod{sip.REGISTER, sip.INVITE, sip.ACK, sip.BYE, sip.CANCEL, sip.PRACK,
		sip.UPDATE, sip.OPTIONS, sip.SUBSCRIBE, sip.NOTIFY, sip.PUBLISH, sip.REFER, sip.INFO, sip.MESSAGE} {
		if string(b) == string(m) {
			return string(m)
		}
	}
	return string(b)
}

// cseqValue reads "number SP METHOD".
func cseqValue(v []byte, f *keyFields) bool {
	sp := bytes.IndexByte(v, ' ')
	if sp < 1 || sp > 10 || !isDigits(v[:sp]) || !isUpper(v[sp+1:]) {
		return false
	}
	n, err := strconv.ParseUint(string(v[:sp]), 10, 32)
	if err != nil || n > 1<<31-1 {
		return false
	}
	f.cseq, f.cseqMethod = uint32(n), methodString(v[sp+1:])
	return true
}

// tagOf reads the tag of a From or To value of the form
// [display] <uri> *(;token=token); false for any other form (quotes, a
// bare URI, a parameter named like tag in another case, two tags).
func tagOf(v []byte) (string, bool) {
	lt := bytes.IndexByte(v, '<')
	gt := bytes.IndexByte(v, '>')
	if lt < 0 || gt < lt || bytes.IndexByte(v, '"') >= 0 || bytes.IndexByte(v[gt+1:], '<') >= 0 || bytes.IndexByte(v[gt+1:], '>') >= 0 {
		return "", false
	}
	params := v[gt+1:]
	tag, found := "", false
	for len(params) > 0 {
		if params[0] != ';' {
			return "", false
		}
		params = params[1:]
		p := params
		if i := bytes.IndexByte(params, ';'); i >= 0 {
			p, params = params[:i], params[i:]
		} else {
			params = nil
		}
		k, val, hasVal := bytes.Cut(p, []byte("="))
		if !isToken(k) || (hasVal && !isToken(val)) {
			return "", false
		}
		if !bytes.EqualFold(k, []byte("tag")) {
			continue
		}
		if string(k) != "tag" || found || !hasVal {
			return "", false
		}
		tag, found = string(val), true
	}
	return tag, true
}

// isVisible reports whether b is printable ASCII without blanks.
func isVisible(b []byte) bool {
	for _, c := range b {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

func isUpper(b []byte) bool {
	for _, c := range b {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return len(b) > 0
}

// isToken reports whether b is a non-empty RFC 3261 token.
func isToken(b []byte) bool {
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case bytes.IndexByte([]byte("-.!%*_+`'~"), c) >= 0:
		default:
			return false
		}
	}
	return len(b) > 0
}

// duplicateCopy reports whether a raw copy on input is, from its prescanned
// identity, a duplicate of one already taken (and counts it as one).
// Copies prescan cannot read, and those no handler takes, are left to the
// full path.
func (in *Ingest) duplicateCopy(input string, b []byte) bool {
	f, ok := prescanKey(b)
	if !ok {
		return false
	}
	kind := classify(sip.RequestMethod(f.cseqMethod), f.status != 0)
	handler := in.h.Call
	if kind == kindRegister || kind == kindRegisterReply {
		handler = in.h.Register
	}
	if kind == kindOther || handler == nil || !in.dedup.recorded(in.dedup.key(input, &f), in.now()) {
		return false
	}
	in.m.Ingest(input, kind, resultDuplicate)
	return true
}
