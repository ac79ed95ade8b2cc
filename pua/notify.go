package pua

import (
	"bytes"
	"time"

	"github.com/emiago/sipgo/sip"
)

// notifyMsg is what a NOTIFY says, read without looking at any state.
type notifyMsg struct {
	event          string // normalised Event package
	callID         string
	toTag, fromTag string
	cseq           uint32
	subState       SubState
	subStateErr    error // a missing or broken Subscription-State
	contact        string
	from, to       string
	routes         []string // Record-Route URIs, each in <>
	contentType    string
	body           []byte
	header         func(name string) string
	hasContact     bool
}

// parseNotify is the parse step of onNotify: it reads every field the state
// step needs from req and touches nothing else.
func parseNotify(req *sip.Request) notifyMsg {
	m := notifyMsg{
		event:  normEvent(headerValue(req, "Event", "o")),
		callID: callID(req),
		header: func(name string) string { return headerValue(req, name) },
	}
	if to := req.To(); to != nil {
		m.toTag, _ = to.Params.Get("tag")
		m.to = to.Address.String()
	}
	if f := req.From(); f != nil {
		m.fromTag, _ = f.Params.Get("tag")
		m.from = f.Address.String()
	}
	if cs := req.CSeq(); cs != nil {
		m.cseq = cs.SeqNo
	}
	if c := req.Contact(); c != nil {
		m.contact, m.hasContact = c.Address.String(), true
	}
	for _, h := range req.GetHeaders("Record-Route") {
		m.routes = append(m.routes, "<"+routeURI(h)+">")
	}
	if h := req.ContentType(); h != nil {
		m.contentType = h.Value()
	}
	m.body = bytes.Clone(req.Body())
	m.subState, m.subStateErr = ParseSubscriptionState(headerValue(req, "Subscription-State"))
	return m
}

// notifyVerdict is what the state step decided: a reply of its own (code
// != 0), or the Notify to hand to the owner's handler.
type notifyVerdict struct {
	code   int
	reason string
	hdrs   []sip.Header
	n      Notify
	flag   int
	// lastCSeq is the dialog's last CSeq when the NOTIFY was out of order.
	lastCSeq uint32
}

// onNotify answers a NOTIFY: 481 when it matches no subscription, 400 for a
// missing or broken Subscription-State, 500 for one older than the last
// NOTIFY of the dialog (RFC 3261 §12.2.2), else the owner's handler's code
// (200 without handler). The NOTIFYs of one dialog reach the handler one at
// a time, in CSeq order.
func (e *Engine) onNotify(req *sip.Request, tx sip.ServerTransaction) {
	m := parseNotify(req)
	respond := func(code int, reason string, hdrs ...sip.Header) {
		e.m.Notify(m.event, code)
		res := sip.NewResponseFromRequest(req, code, reason, nil)
		for _, h := range hdrs {
			res.AppendHeader(h)
		}
		if err := tx.Respond(res); err != nil {
			e.log.Debug("notify reply failed", "call_id", m.callID, "err", err)
		}
	}
	select {
	case <-e.loaded: // restored dialogs are indexed
	case <-e.stopCtx.Done():
	}
	e.dmu.Lock()
	r := e.dialogs[dialogKey{m.callID, m.toTag}]
	e.dmu.Unlock()
	if r == nil || m.toTag == "" {
		e.log.Debug("notify for no subscription", "call_id", m.callID, "event", m.event)
		respond(sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	if m.subStateErr != nil {
		e.log.Warn("notify refused", "call_id", m.callID, "event", m.event, "err", m.subStateErr)
		respond(sip.StatusBadRequest, "Bad Subscription-State")
		return
	}
	r.notifyMu.Lock()
	defer r.notifyMu.Unlock()
	v := e.applyNotify(r, &m)
	if v.code != 0 {
		if v.code == sip.StatusInternalServerError {
			e.log.Info("notify refused", "call_id", m.callID, "event", m.event, "reason", "out of order",
				"cseq", m.cseq, "last_cseq", v.lastCSeq)
		}
		respond(v.code, v.reason, v.hdrs...)
		return
	}
	code, reason := 200, "OK"
	if h := e.handler(v.flag); h != nil {
		code, reason = h(e.stopCtx, v.n)
		if code < 200 || code > 699 {
			e.log.Warn("notify handler returned an invalid code", "code", code, "call_id", m.callID)
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

// applyNotify is the state step of onNotify: it checks the NOTIFY against
// the subscription's dialog and records what it changes (remote tag, CSeq,
// target, route set, last document, refresh time, state). r.notifyMu is
// held.
func (e *Engine) applyNotify(r *subRec, m *notifyMsg) notifyVerdict {
	now := e.clock.Now()
	s := r.shard
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.deleted || r.callID != m.callID || r.localTag != m.toTag || (r.remoteTag != "" && r.remoteTag != m.fromTag && r.confirmed) {
		return notifyVerdict{code: sip.StatusCallTransactionDoesNotExists, reason: "Call/Transaction Does Not Exist"}
	}
	if r.haveRemoteCSeq && m.cseq < r.remoteCSeq && (r.remoteTag == "" || r.remoteTag == m.fromTag) {
		// Retry-After keeps the subscription alive at the notifier
		// (RFC 6665 §4.2.2: a failed NOTIFY without it ends the subscription).
		return notifyVerdict{code: sip.StatusInternalServerError, reason: "Server Internal Error",
			hdrs: []sip.Header{sip.NewHeader("Retry-After", "1")}, lastCSeq: r.remoteCSeq}
	}
	ss := m.subState
	r.remoteCSeq, r.haveRemoteCSeq = m.cseq, true
	if r.remoteTag == "" {
		r.remoteTag = m.fromTag
	}
	if m.hasContact {
		r.remoteTarget = m.contact
	}
	if !r.confirmed && r.routes == nil {
		r.routes = m.routes
	}
	r.lastNotify, r.lastCT, r.lastDoc = now.Unix(), m.contentType, m.body
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
	n := Notify{Key: r.key, State: ss.State, Reason: ss.Reason, Expires: ss.Expires, ContentType: m.contentType,
		Body: m.body, Headers: m.header, Contact: m.contact, From: m.from, To: m.to}
	if ss.State == "terminated" {
		e.log.Info("subscription terminated by notifier", "aor", r.key.PresURI, "event", r.key.Event,
			"call_id", m.callID, "reason", ss.Reason)
		if r.unsubSent && !r.unsub {
			// The notifier's answer to an un-SUBSCRIBE in flight in
			// this dialog, after which the owner subscribed again: that
			// dialog is over, a new one is made at the un-SUBSCRIBE's
			// reply. (Subscribed again while a failed one waits for its
			// retry, the dialog was left at once.)
			e.resetDialog(r)
		} else {
			e.dropSub(r, Result{Status: 200, Reason: "terminated"})
		}
	}
	return notifyVerdict{n: n, flag: r.flag}
}
