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
// the parsed request as they are, without building a sipgo response (that
// cloned every copied header per copy). The tag is derived from the
// request's Call-ID, From tag and CSeq, so a retransmitted copy is answered
// with the same tag.
func statelessOK(req *sip.Request, src netip.AddrPort) []byte {
	var b bytes.Buffer
	b.Grow(512)
	b.WriteString("SIP/2.0 200 OK\r\n")
	if req.Method != sip.REGISTER {
		// RFC 3261 §12.1.1: a 2xx that could set up a dialog copies them.
		for _, h := range req.GetHeaders("Record-Route") {
			h.StringWrite(&b)
			b.WriteString("\r\n")
		}
	}
	for i, h := range req.GetHeaders("Via") {
		if v, ok := h.(*sip.ViaHeader); ok && i == 0 {
			if val, exists := v.Params.Get("rport"); exists && val == "" {
				top := v.Clone()
				top.Params.Add("rport", strconv.Itoa(int(src.Port())))
				top.Params.Add("received", src.Addr().String())
				h = top
			}
		}
		h.StringWrite(&b)
		b.WriteString("\r\n")
	}
	if h := req.From(); h != nil {
		h.StringWrite(&b)
		b.WriteString("\r\n")
	}
	if h := req.To(); h != nil {
		h.StringWrite(&b)
		if !h.Params.Has("tag") {
			b.WriteString(";tag=")
			b.WriteString(replyTag(req))
		}
		b.WriteString("\r\n")
	}
	if h := req.CallID(); h != nil {
		h.StringWrite(&b)
		b.WriteString("\r\n")
	}
	if h := req.CSeq(); h != nil {
		h.StringWrite(&b)
		b.WriteString("\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.Bytes()
}

// replyTag is the To tag of statelessOK: FNV-1a of Call-ID, From tag and
// CSeq, in hexadecimal.
func replyTag(req *sip.Request) string {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	mix := func(s string) {
		for i := 0; i < len(s); i++ {
			h = (h ^ uint64(s[i])) * prime
		}
		h = (h ^ 0xff) * prime // separator
	}
	if c := req.CallID(); c != nil {
		mix(c.Value())
	}
	if f := req.From(); f != nil {
		t, _ := f.Params.Get("tag")
		mix(t)
	}
	if cs := req.CSeq(); cs != nil {
		mix(strconv.FormatUint(uint64(cs.SeqNo), 10))
	}
	return strconv.FormatUint(h, 16)
}

// header returns the first header called name (case-insensitive) or nil.
func header(msg sip.Message, name string) sip.Header {
	if hs := msg.GetHeaders(name); len(hs) > 0 {
		return hs[0]
	}
	return nil
}
