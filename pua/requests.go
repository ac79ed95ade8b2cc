package pua

import (
	"fmt"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// newRequest builds a fresh request (never reused: sipgo would resend the
// same Via branch) with our own Call-ID and CSeq.
func newRequest(method sip.RequestMethod, ruri sip.Uri, from, to sip.Uri, fromTag, toTag, cid string, cseq uint32) *sip.Request {
	req := sip.NewRequest(method, ruri)
	f := &sip.FromHeader{Address: from, Params: sip.NewParams()}
	f.Params.Add("tag", fromTag)
	t := &sip.ToHeader{Address: to, Params: sip.NewParams()}
	if toTag != "" {
		t.Params.Add("tag", toTag)
	}
	c := sip.CallIDHeader(cid)
	cs := &sip.CSeqHeader{SeqNo: cseq, MethodName: method}
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(f)
	req.AppendHeader(t)
	req.AppendHeader(&c)
	req.AppendHeader(cs)
	req.AppendHeader(&mf)
	return req
}

// setBody sets the body and its Content-Type.
func setBody(req *sip.Request, ctype string, body []byte) {
	if len(body) > 0 {
		ct := sip.ContentTypeHeader(ctype)
		req.AppendHeader(&ct)
	}
	req.SetBody(body)
}

// sendPublish builds and sends one PUBLISH; done gets the Result where
// its transaction ends (sipStack.sendAsync).
func (e *Engine) sendPublish(op pubOp, done func(Result)) {
	var uri sip.Uri
	if err := sip.ParseUri(op.presURI, &uri); err != nil {
		done(Result{Err: fmt.Errorf("pua: PUBLISH %s: %w", op.presURI, err)})
		return
	}
	aor := sip.Uri{Scheme: uri.Scheme, User: uri.User, Host: uri.Host, Port: uri.Port}
	req := newRequest(sip.PUBLISH, aor, aor, aor, sip.GenerateTagN(16), "", sip.GenerateTagN(24), 1)
	req.AppendHeader(sip.NewHeader("Event", op.event))
	exp := sip.ExpiresHeader(op.expires)
	if op.kind == pubRemove {
		exp = 0
	}
	req.AppendHeader(&exp)
	if op.etag != "" {
		req.AppendHeader(sip.NewHeader("SIP-If-Match", op.etag))
	}
	for _, h := range op.hdrs {
		req.AppendHeader(sip.NewHeader(h.Name, h.Value))
	}
	setBody(req, op.ctype, op.body)
	hop := op.proxy
	if hop == "" {
		hop = e.cfg.OutboundProxy
	}
	if hop == "" {
		hop = e.cfg.ServerAddress
	}
	e.sip.sendAsync(req, hop, op.event, func(out txOutcome) { done(out.result()) })
}

// sendSubscribe builds and sends one SUBSCRIBE.
func (e *Engine) sendSubscribe(op subOp) txOutcome {
	var ruri, to, from sip.Uri
	for _, p := range []struct {
		s string
		u *sip.Uri
	}{{op.ruri, &ruri}, {op.key.PresURI, &to}, {op.key.WatcherURI, &from}} {
		if err := sip.ParseUri(p.s, p.u); err != nil {
			return txOutcome{err: fmt.Errorf("pua: SUBSCRIBE %s: %w", p.s, err)}
		}
	}
	req := newRequest(sip.SUBSCRIBE, ruri, from, to, op.localTag, op.remoteTag, op.callID, op.cseq)
	for _, rt := range op.routes {
		var u sip.Uri
		if err := sip.ParseUri(strings.Trim(rt, "<>"), &u); err == nil {
			req.AppendHeader(&sip.RouteHeader{Address: u})
		}
	}
	var contact sip.Uri
	if err := sip.ParseUri(op.contact, &contact); err == nil {
		req.AppendHeader(&sip.ContactHeader{Address: contact})
	}
	req.AppendHeader(sip.NewHeader("Event", op.key.Event))
	exp := sip.ExpiresHeader(op.expires)
	req.AppendHeader(&exp)
	for _, h := range op.hdrs {
		req.AppendHeader(sip.NewHeader(h.Name, h.Value))
	}
	req.SetBody(nil)
	hop := op.proxy
	if hop == "" {
		hop = e.cfg.OutboundProxy
	}
	if hop == "" && len(op.routes) == 0 && op.ruri == op.key.PresURI {
		// A subscription to a presentity (no target of its own) goes to
		// the presence server, as PUBLISHes do.
		hop = e.cfg.ServerAddress
	}
	return e.sip.send(req, hop, op.key.Event)
}

// routeURI extracts the URI of a Record-Route/Route header.
func routeURI(h sip.Header) string {
	switch v := h.(type) {
	case *sip.RecordRouteHeader:
		return v.Address.String()
	case *sip.RouteHeader:
		return v.Address.String()
	}
	return strings.Trim(strings.TrimSpace(h.Value()), "<>")
}
