package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/aor"
	"github.com/puaside/puaside/internal/sipwrite"
)

// Kinds of input, the "kind" label of the ingest metrics.
const (
	kindRegister      = "register"
	kindRegisterReply = "register_reply"
	kindCall          = "call"
	kindEvent         = "event"
	kindOther         = "other"
)

// errMissingHeader is wrapped by parseMirror when a basic header is absent.
var errMissingHeader = errors.New("missing header")

// mirrored is a parsed, validated SIP copy with the fields the pipeline
// needs, all read before the message is handed to a worker (sipgo parses
// some headers lazily, so reading them later from two goroutines would race).
type mirrored struct {
	msg    sip.Message
	req    *sip.Request // nil for a response
	callID string
	cseq   uint32
	method sip.RequestMethod // CSeq method
	status int               // 0 for a request
	// fromTag and toTag are the dialog tags; aor is the To URI without
	// parameters (the key of REGISTER ordering).
	fromTag, toTag, aor string
	kind                string
}

// parseMirror parses one raw SIP message and checks that the headers every
// consumer relies on (Via, From, To, Call-ID, CSeq) are present. A panic in
// the parser is turned into an error: a copy never takes the process down.
func parseMirror(p *sip.Parser, b []byte) (m *mirrored, err error) {
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("sip parser panic: %v", r)
		}
	}()
	msg, err := p.ParseSIP(b)
	if err != nil {
		return nil, err
	}
	return inspect(msg)
}

func inspect(msg sip.Message) (*mirrored, error) {
	m := &mirrored{msg: msg}
	via := msg.Via()
	from, to := msg.From(), msg.To()
	cid, cseq := msg.CallID(), msg.CSeq()
	switch {
	case via == nil:
		return nil, fmt.Errorf("%w: Via", errMissingHeader)
	case from == nil:
		return nil, fmt.Errorf("%w: From", errMissingHeader)
	case to == nil:
		return nil, fmt.Errorf("%w: To", errMissingHeader)
	case cid == nil || cid.Value() == "":
		return nil, fmt.Errorf("%w: Call-ID", errMissingHeader)
	case cseq == nil || cseq.MethodName == "":
		return nil, fmt.Errorf("%w: CSeq", errMissingHeader)
	}
	m.callID = cid.Value()
	m.cseq = cseq.SeqNo
	m.method = cseq.MethodName
	m.fromTag, _ = from.Params.Get("tag")
	m.toTag, _ = to.Params.Get("tag")
	m.aor = aor.KeyOfURI(&to.Address)
	switch v := msg.(type) {
	case *sip.Request:
		m.req = v
		if v.Method != m.method {
			return nil, fmt.Errorf("CSeq method %s does not match request method %s", m.method, v.Method)
		}
		// Force the lazy parse of the first Contact now, for the same
		// reason as above.
		_ = v.Contact()
	case *sip.Response:
		m.status = v.StatusCode
	default:
		return nil, fmt.Errorf("unexpected message type %T", msg)
	}
	m.kind = classify(m.method, m.status != 0)
	return m, nil
}

// classify maps the CSeq method to a metric kind.
func classify(method sip.RequestMethod, response bool) string {
	switch method {
	case sip.REGISTER:
		if response {
			return kindRegisterReply
		}
		return kindRegister
	case sip.INVITE, sip.ACK, sip.CANCEL, sip.BYE, sip.UPDATE, sip.PRACK:
		return kindCall
	}
	return kindOther
}

// orderKey is the key whose messages must reach the handlers in order.
func (m *mirrored) orderKey() string {
	if m.method == sip.REGISTER {
		return m.aor
	}
	return m.callID
}

// applyXHeaders sets src/dst/time from Kamailio's X-Siptrace-* headers
// (siptrace xheaders_write=1), when present and well formed.
func applyXHeaders(msg sip.Message, src, dst *netip.AddrPort, t *time.Time) {
	if h := header(msg, "X-Siptrace-Fromip"); h != nil {
		if a, ok := parseTraceAddr(h.Value()); ok {
			*src = a
		}
	}
	if h := header(msg, "X-Siptrace-Toip"); h != nil {
		if a, ok := parseTraceAddr(h.Value()); ok {
			*dst = a
		}
	}
	if h := header(msg, "X-Siptrace-Time"); h != nil {
		sec, usec, _ := strings.Cut(strings.TrimSpace(h.Value()), " ")
		s, err1 := strconv.ParseInt(sec, 10, 64)
		u, err2 := strconv.ParseInt(strings.TrimSpace(usec), 10, 64)
		if err1 == nil && s > 0 && (usec == "" || (err2 == nil && u >= 0 && u < 1000000)) {
			*t = time.Unix(s, u*1000).UTC()
		}
	}
}

// parseTraceAddr parses "udp:1.2.3.4:5060" or "tcp:[2001:db8::1]:5060".
func parseTraceAddr(v string) (netip.AddrPort, bool) {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, ':'); i > 0 && i < 6 && !strings.ContainsAny(v[:i], ".[") {
		v = v[i+1:]
	}
	a, err := netip.ParseAddrPort(v)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()), true
}

// statelessOK builds the 200 OK answering a replicated request: Via, From,
// To (with a tag added when it has none), Call-ID and CSeq copied, and
// Record-Route unless it answers a REGISTER; no body.
// src is where the copy came from: the top Via gets rport and received
// (RFC 3581) when it asks with an empty rport. The headers are written from
// the parsed request as sipgo writes them, without building a sipgo
// response (that cloned every copied header per copy) and without sipgo's
// per-value strings. The tag is derived from the request's Call-ID, From
// tag and CSeq, so a retransmitted copy is answered with the same tag.
func statelessOK(req *sip.Request, src netip.AddrPort) []byte {
	b := make([]byte, 0, 512)
	b = append(b, "SIP/2.0 200 OK\r\n"...)
	hs := req.Headers()
	if req.Method != sip.REGISTER {
		// RFC 3261 §12.1.1: a 2xx that could set up a dialog copies them.
		var w bytes.Buffer
		for _, h := range hs {
			if sipwrite.SameName(h.Name(), "Record-Route") {
				h.StringWrite(&w)
				w.WriteString("\r\n")
			}
		}
		b = append(b, w.Bytes()...)
	}
	top := true
	for _, h := range hs {
		if !sipwrite.SameName(h.Name(), "Via") {
			continue
		}
		v, ok := h.(*sip.ViaHeader)
		if !ok {
			b = appendHeader(b, h.Name(), h.Value())
			top = false
			continue
		}
		params := v.Params
		if top {
			if val, exists := v.Params.Get("rport"); exists && val == "" {
				params = withRport(v.Params, src)
			}
		}
		top = false
		b = append(b, "Via: "...)
		b = sipwrite.AppendViaValue(b, v, params)
		b = append(b, "\r\n"...)
	}
	if h := req.From(); h != nil {
		b = append(b, "From: "...)
		b = sipwrite.AppendNameAddr(b, h.DisplayName, &h.Address, h.Params)
		b = append(b, "\r\n"...)
	}
	if h := req.To(); h != nil {
		b = append(b, "To: "...)
		b = sipwrite.AppendNameAddr(b, h.DisplayName, &h.Address, h.Params)
		if !h.Params.Has("tag") {
			b = append(b, ";tag="...)
			b = strconv.AppendUint(b, replyTag(req), 16)
		}
		b = append(b, "\r\n"...)
	}
	if h := req.CallID(); h != nil {
		b = appendHeader(b, "Call-ID", h.Value())
	}
	if h := req.CSeq(); h != nil {
		b = append(b, "CSeq: "...)
		b = strconv.AppendInt(b, int64(h.SeqNo), 10)
		b = append(b, ' ')
		b = append(b, h.MethodName...)
		b = append(b, "\r\n"...)
	}
	return append(b, "Content-Length: 0\r\n\r\n"...)
}

// appendHeader appends "name: value" and CRLF.
func appendHeader(b []byte, name, value string) []byte {
	b = append(b, name...)
	b = append(b, ": "...)
	b = append(b, value...)
	return append(b, "\r\n"...)
}

// withRport returns a copy of a top Via's params with rport set to the
// source port and received to the source address (sip.HeaderParams.Add
// for each: set in place when present, appended otherwise).
func withRport(p sip.HeaderParams, src netip.AddrPort) sip.HeaderParams {
	out := make(sip.HeaderParams, len(p), len(p)+1)
	copy(out, p)
	out.Add("rport", strconv.Itoa(int(src.Port())))
	out.Add("received", src.Addr().String())
	return out
}

// replyTag is the To tag of statelessOK: FNV-1a of Call-ID, From tag and
// CSeq.
func replyTag(req *sip.Request) uint64 {
	h := uint64(fnvOffset)
	if c := req.CallID(); c != nil {
		h = fnvMix(h, c.Value())
	}
	if f := req.From(); f != nil {
		t, _ := f.Params.Get("tag")
		h = fnvMix(h, t)
	}
	if cs := req.CSeq(); cs != nil {
		var n [10]byte
		h = fnvMix(h, strconv.AppendUint(n[:0], uint64(cs.SeqNo), 10))
	}
	return h
}

const fnvOffset, fnvPrime = 14695981039346656037, 1099511628211

// fnvMix adds s and a separator to the FNV-1a hash h.
func fnvMix[T string | []byte](h uint64, s T) uint64 {
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * fnvPrime
	}
	return (h ^ 0xff) * fnvPrime
}

// header returns the first header called name (case-insensitive) or nil.
// It walks the headers without sipgo's GetHeaders, which lowercases every
// header name it compares (a string for each uncommon one) and collects
// all matches.
func header(msg sip.Message, name string) sip.Header {
	hs, ok := msg.(interface{ Headers() []sip.Header })
	if !ok {
		if all := msg.GetHeaders(name); len(all) > 0 {
			return all[0]
		}
		return nil
	}
	for _, h := range hs.Headers() {
		if sipwrite.SameName(h.Name(), name) {
			return h
		}
	}
	return nil
}
