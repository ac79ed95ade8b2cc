package pua

import (
	"bytes"
	"time"

	"github.com/emiago/sipgo/sip"
)

// onNotify answers a NOTIFY: 481 when it matches no subscription, 400 for a
// missing or broken Subscription-State, 500 for one older than the last
// NOTIFY of the dialog (RFC 3261 §12.2.2), else the owner's handler's code
// (200 without handler). The NOTIFYs of one dialog reach the handler one at
// a time, in CSeq order.
func (e *Engine) onNotify(req *sip.Request, tx sip.ServerTransaction) {
	event := normEvent(headerValue(req, "Event", "o"))
	cid := callID(req)
	respond := func(code int, reason string, hdrs ...sip.Header) {
		e.m.Notify(event, code)
		res := sip.NewResponseFromRequest(req, code, reason, nil)
		for _, h := range hdrs {
			res.AppendHeader(h)
		}
		if err := tx.Respond(res); err != nil {
			e.log.Debug("notify reply failed", "call_id", cid, "err", err)
		}
	}
	var toTag string
	if to := req.To(); to != nil {
		toTag, _ = to.Params.Get("tag")
	}
	select {
	case <-e.loaded: // restored dialogs are indexed
	case <-e.stopCtx.Done():
	}
	e.dmu.Lock()
	r := e.dialogs[dialogKey{cid, toTag}]
	e.dmu.Unlock()
	if r == nil || toTag == "" {
		e.log.Debug("notify for no subscription", "call_id", cid, "event", event)
		respond(sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	ss, err := ParseSubscriptionState(headerValue(req, "Subscription-State"))
	if err != nil {
		e.log.Warn("notify refused", "call_id", cid, "event", event, "err", err)
		respond(sip.StatusBadRequest, "Bad Subscription-State")
		return
	}
	var fromTag string
	if f := req.From(); f != nil {
		fromTag, _ = f.Params.Get("tag")
	}
	var seq uint32
	if cs := req.CSeq(); cs != nil {
		seq = cs.SeqNo
	}
	r.notifyMu.Lock()
	defer r.notifyMu.Unlock()
	now := e.clock.Now()
	s := r.shard
	s.mu.Lock()
	if r.deleted || r.callID != cid || r.localTag != toTag || (r.remoteTag != "" && r.remoteTag != fromTag && r.confirmed) {
		s.mu.Unlock()
		respond(sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	if r.haveRemoteCSeq && seq < r.remoteCSeq && (r.remoteTag == "" || r.remoteTag == fromTag) {
		last := r.remoteCSeq
		s.mu.Unlock()
		e.log.Info("notify refused", "call_id", cid, "event", event, "reason", "out of order",
			"cseq", seq, "last_cseq", last)
		// Retry-After keeps the subscription alive at the notifier
		// (RFC 6665 §4.2.2: a failed NOTIFY without it ends the subscription).
		ra := sip.NewHeader("Retry-After", "1")
		respond(sip.StatusInternalServerError, "Server Internal Error", ra)
		return
	}
	r.remoteCSeq, r.haveRemoteCSeq = seq, true
	if r.remoteTag == "" {
		r.remoteTag = fromTag
	}
	if c := req.Contact(); c != nil {
		r.remoteTarget = c.Address.String()
	}
	if !r.confirmed && r.routes == nil {
		for _, h := range req.GetHeaders("Record-Route") {
			r.routes = append(r.routes, "<"+routeURI(h)+">")
		}
	}
	body := bytes.Clone(req.Body())
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = h.Value()
	}
	r.lastNotify, r.lastCT, r.lastDoc = now.Unix(), ct, body
	if ss.State != "terminated" && ss.Expires > 0 && r.confirmed && !r.inFlight {
		if at := refreshAt(now, time.Duration(ss.Expires)*time.Second).UnixNano(); at < r.nextRefresh {
			r.nextRefresh = at
			e.sched.Schedule(r, time.Unix(0, at))
		}
	}
	if ss.State == "pending" {
		r.state = StatePending
	}
	e.markDirty(r, &r.dirty)
	n := Notify{Key: r.key, State: ss.State, Reason: ss.Reason, Expires: ss.Expires, ContentType: ct, Body: body,
		Headers: func(name string) string { return headerValue(req, name) }}
	if c := req.Contact(); c != nil {
		n.Contact = c.Address.String()
	}
	if f := req.From(); f != nil {
		n.From = f.Address.String()
	}
	if t := req.To(); t != nil {
		n.To = t.Address.String()
	}
	flag := r.flag
	if ss.State == "terminated" {
		e.log.Info("subscription terminated by notifier", "aor", r.key.PresURI, "event", r.key.Event,
			"call_id", cid, "reason", ss.Reason)
		e.dropSub(r, Result{Status: 200, Reason: "terminated"})
	}
	s.mu.Unlock()

	code, reason := 200, "OK"
	if h := e.handler(flag); h != nil {
		code, reason = h(e.stopCtx, n)
		if code < 200 || code > 699 {
			e.log.Warn("notify handler returned an invalid code", "code", code, "call_id", cid)
			code, reason = 500, "Server Internal Error"
		}
		if reason == "" {
			reason = "OK"
			if code >= 300 {
				reason = "Error"
			}
		}
	}
	respond(code, reason)
}
