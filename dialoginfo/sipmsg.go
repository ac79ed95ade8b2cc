package dialoginfo

import (
	"context"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/aor"
	"github.com/puaside/puaside/event"
)

// uriUser is the AoR of a From, To or Request-URI by the daemon's rule
// (package aor); "" when it names no user at a host.
func uriUser(u *sip.Uri) string {
	a, _ := aor.FromURI(u)
	return a
}

// contactOf returns the Contact URI of a message (no params), or "".
func contactOf(m sip.Message) string {
	var h *sip.ContactHeader
	switch msg := m.(type) {
	case *sip.Request:
		h = msg.Contact()
	case *sip.Response:
		h = msg.Contact()
	}
	if h == nil || h.Address.Wildcard || h.Address.Host == "" {
		return ""
	}
	u := h.Address
	u.UriParams = nil
	u.Headers = nil
	return u.String()
}

// dialogHeaders are the identifying headers of a message.
type dialogHeaders struct {
	callID  string
	fromTag string
	toTag   string
	from    *sip.FromHeader
	to      *sip.ToHeader
	cseq    *sip.CSeqHeader
}

func readHeaders(m sip.Message) (dialogHeaders, string) {
	var h dialogHeaders
	cid := m.CallID()
	if cid == nil || *cid == "" {
		return h, "missing_callid"
	}
	h.callID = string(*cid)
	h.from, h.to, h.cseq = m.From(), m.To(), m.CSeq()
	if h.from == nil || h.to == nil || h.cseq == nil {
		return h, "missing_header"
	}
	h.fromTag, _ = h.from.Params.Get("tag")
	h.toTag, _ = h.to.Params.Get("tag")
	if h.fromTag == "" {
		return h, "missing_tag"
	}
	return h, ""
}

// HandleSIP applies one mirrored SIP message: INVITE, ACK, CANCEL, BYE,
// UPDATE and PRACK requests and their responses. Copies may arrive twice
// (as received and as forwarded) or be retransmitted: they change nothing.
// Messages that do not fit the known state are ignored, counted and logged.
func (t *Tracker) HandleSIP(ctx context.Context, m event.SIP) {
	switch msg := m.Msg.(type) {
	case *sip.Request:
		t.handleRequest(msg)
	case *sip.Response:
		t.handleResponse(msg)
	default:
		t.ignore("not_sip", "", "nil message")
	}
}

// lookup finds the call of an in-dialog message and says which side sent
// it: (call-id, from-tag) is the caller's own message; (call-id, to-tag) is
// the callee's (its From carries the callee's tag).
func (t *Tracker) lookup(h *dialogHeaders) (*call, *branch, int) {
	if c := t.calls[callKey(h.callID, h.fromTag)]; c != nil {
		c.touched = t.now().UnixNano()
		if h.toTag == "" {
			return c, nil, sideCaller
		}
		return c, c.branchByTag(h.toTag), sideCaller
	}
	if h.toTag != "" {
		if c := t.calls[callKey(h.callID, h.toTag)]; c != nil {
			c.touched = t.now().UnixNano()
			return c, c.branchByTag(h.fromTag), sideCallee
		}
	}
	return nil, nil, 0
}

func (t *Tracker) handleRequest(req *sip.Request) {
	method := req.Method
	switch method {
	case sip.INVITE, sip.ACK, sip.CANCEL, sip.BYE, sip.UPDATE, sip.PRACK:
	default:
		t.ignore("method", "", string(method))
		return
	}
	h, bad := readHeaders(req)
	if bad != "" {
		t.ignore(bad, h.callID, string(method))
		return
	}
	now := t.now().UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case method == sip.INVITE && h.toTag == "":
		t.initialInvite(req, &h, now)
	case method == sip.INVITE || method == sip.UPDATE:
		t.inDialogOffer(req, &h, now)
	case method == sip.CANCEL:
		c := t.calls[callKey(h.callID, h.fromTag)]
		if c == nil {
			t.ignore("unknown_call", h.callID, "CANCEL")
			return
		}
		changed := false
		for _, b := range c.Branches {
			if b.State < stConfirmed {
				t.terminate(c, b, evCancelled, evCancelled, 0, now)
				changed = true
			}
		}
		if !changed {
			t.ignore("duplicate", h.callID, "CANCEL")
			return
		}
		t.sync(c)
	case method == sip.BYE:
		t.bye(&h, now, "BYE")
	default: // ACK, PRACK: no state change
		t.count("seen_" + strings.ToLower(string(method)))
	}
}

func (t *Tracker) initialInvite(req *sip.Request, h *dialogHeaders, now int64) {
	if c := t.calls[callKey(h.callID, h.fromTag)]; c != nil {
		if h.cseq.SeqNo == c.CSeq {
			// The copy as the proxy received it may come second: the call's
			// Via count is the smaller one (see forksOwn).
			if n := len(req.GetHeaders("Via")); n > 0 && n < c.InviteVias {
				c.InviteVias = n
				t.markDirty(c)
			}
		}
		switch {
		case h.cseq.SeqNo == c.CSeq:
			t.ignore("duplicate", h.callID, "INVITE")
		case h.cseq.SeqNo > c.CSeq && !c.Answered && !c.over():
			c.CSeq = h.cseq.SeqNo // a new attempt after an auth challenge
			t.markDirty(c)
			t.count("invite_retry")
		default:
			t.ignore("after_final", h.callID, "INVITE")
		}
		return
	}
	caller := uriUser(&h.from.Address)
	callee := uriUser(&h.to.Address)
	if t.cfg.IncludeReqURI {
		if a := uriUser(&req.Recipient); a != "" {
			callee = a
		}
	}
	if caller == "" || callee == "" {
		t.ignore("bad_uri", h.callID, "INVITE")
		return
	}
	if t.callCapped(h.callID, "INVITE") {
		return
	}
	c := t.newCall(h.callID, h.fromTag, caller, h.from.DisplayName, contactOf(req), callee, h.to.DisplayName, h.cseq.SeqNo, now)
	if c == nil {
		t.ignore("not_local", h.callID, "INVITE")
		return
	}
	c.InviteVias = len(req.GetHeaders("Via"))
	t.sync(c)
}

// inDialogOffer handles a re-INVITE or UPDATE: a sign of life, and hold or
// resume when its SDP offer says so.
func (t *Tracker) inDialogOffer(req *sip.Request, h *dialogHeaders, now int64) {
	what := string(req.Method)
	c, b, s := t.lookup(h)
	switch {
	case c == nil:
		t.ignore("unknown_call", h.callID, what)
		return
	case h.toTag == "" || b == nil:
		t.ignore("unknown_dialog", h.callID, what)
		return
	case b.State != stConfirmed:
		t.ignore("not_confirmed", h.callID, what)
		return
	}
	c.Active = now
	dir := DirUnknown
	if body := req.Body(); len(body) > 0 {
		dir = SDPDirection(body)
	}
	if dir != DirUnknown {
		b.OfferSeq[s], b.PrevHold[s] = h.cseq.SeqNo, b.Hold[s]
		held := dir.Holds()
		if b.Hold[s] != held {
			b.Hold[s] = held
			if held {
				t.count("hold")
			} else {
				t.count("resume")
			}
		}
	}
	t.sync(c)
}

// bye ends the dialog named by a BYE (or a final response to one).
func (t *Tracker) bye(h *dialogHeaders, now int64, what string) {
	c, b, s := t.lookup(h)
	switch {
	case c == nil:
		t.ignore("unknown_call", h.callID, what)
		return
	case h.toTag == "":
		t.ignore("missing_tag", h.callID, what)
		return
	case b == nil && !c.over():
		// The BYE overtook its dialog's 2xx: that 2xx was sent.
		tag := h.toTag
		if s == sideCallee {
			tag = h.fromTag
		}
		if t.branchCapped(c, tag, what) {
			return
		}
		b = c.branchFor(tag)
		t.answer(c, b, "", now)
	case b == nil:
		t.ignore("unknown_dialog", h.callID, what)
		return
	case b.State == stTerminated:
		t.ignore("duplicate", h.callID, what)
		return
	}
	ev := [2]string{evRemoteBye, evRemoteBye}
	ev[s] = evLocalBye
	t.terminate(c, b, ev[sideCaller], ev[sideCallee], 0, now)
	t.sync(c)
}

func (t *Tracker) handleResponse(res *sip.Response) {
	h, bad := readHeaders(res)
	if bad != "" {
		t.ignore(bad, h.callID, "response")
		return
	}
	code := res.StatusCode
	what := strings.TrimSpace(string(h.cseq.MethodName) + " " + strconv.Itoa(code))
	if code < 100 || code > 699 {
		t.ignore("bad_status", h.callID, what)
		return
	}
	now := t.now().UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	switch h.cseq.MethodName {
	case sip.INVITE:
		c := t.calls[callKey(h.callID, h.fromTag)]
		if c == nil || h.cseq.SeqNo != c.CSeq {
			if c == nil {
				t.ignore("unknown_call", h.callID, what)
			} else {
				t.count("seen_reinvite_response")
			}
			if code >= 300 {
				t.failedOffer(&h, code, now)
			}
			return
		}
		t.inviteResponse(c, res, &h, code, now, what)
	case sip.UPDATE:
		if code >= 300 {
			t.failedOffer(&h, code, now)
		}
	case sip.BYE:
		if code >= 200 {
			t.bye(&h, now, what)
			return
		}
		t.count("seen_response")
	default:
		t.count("seen_response")
	}
}

func (t *Tracker) inviteResponse(c *call, res *sip.Response, h *dialogHeaders, code int, now int64, what string) {
	if c.over() {
		t.ignore("after_final", h.callID, what)
		return
	}
	switch {
	case code < 200 && h.toTag == "":
		p := c.pending()
		if p == nil || p.State >= stProceeding {
			t.ignore("duplicate", h.callID, what)
			return
		}
		p.State = stProceeding
	case code < 200:
		b := c.branchByTag(h.toTag)
		switch {
		case b == nil && c.Answered:
			t.ignore("late_provisional", h.callID, what)
			return
		case b == nil && t.branchCapped(c, h.toTag, what):
			return
		case b == nil:
			b = c.branchFor(h.toTag)
		case b.State >= stEarly:
			if b.State == stEarly && b.Contact == "" {
				if ct := contactOf(res); ct != "" {
					b.Contact = ct
					break
				}
			}
			if b.State > stEarly {
				t.ignore("late_provisional", h.callID, what)
			} else {
				t.ignore("duplicate", h.callID, what)
			}
			return
		}
		b.State = stEarly
		if ct := contactOf(res); ct != "" {
			b.Contact = ct
		}
	case code < 300:
		if h.toTag == "" {
			t.ignore("missing_tag", h.callID, what)
			return
		}
		b := c.branchByTag(h.toTag)
		switch {
		case b == nil && c.Answered && t.branchCapped(c, h.toTag, what):
			// Another fork answering past the cap. The first answer of
			// the call is always taken, past the cap or not.
			return
		case b == nil:
			b = c.branchFor(h.toTag)
		case b.State == stConfirmed:
			t.ignore("duplicate", h.callID, what)
			return
		case b.State == stTerminated:
			t.ignore("after_final", h.callID, what)
			return
		}
		t.answer(c, b, contactOf(res), now)
	case (code == 401 || code == 407) && !c.forksOwn(res):
		// Authentication challenge: the caller will retry with a new CSeq.
		// Withdraw what was shown instead of flashing "rejected".
		for _, b := range c.Branches {
			t.removeBranch(c, b)
		}
		t.count("auth_challenge")
		t.dropCall(c)
		return
	default:
		ev := evRejected
		if code == 487 {
			ev = evCancelled
		}
		if c.forksOwn(res) {
			// A fork's own final answer, as the proxy received it (it
			// still carries the proxy's Via). The proxy answers the call
			// only when every fork has answered (a 2xx at once), and forks
			// that have not rung yet are not known here: the call goes on.
			// The fork's early dialog ends when another one is still
			// live; the last live one stays until the call's answer (the
			// forwarded final response, or another fork's 2xx), as the
			// proxy's own transaction does.
			b := c.branchByTag(h.toTag)
			if h.toTag == "" || b == nil || b.State >= stConfirmed || !c.liveBesides(b) {
				t.ignore("fork_final", h.callID, what)
				return
			}
			t.terminate(c, b, ev, ev, code, now)
			t.sync(c)
			return
		}
		var targets []*branch
		b := c.branchByTag(h.toTag)
		tagged := h.toTag != "" && b != nil
		if tagged && b.State == stConfirmed {
			t.ignore("after_final", h.callID, what)
			return
		}
		if c.InviteVias > 0 {
			// The call's own final answer (the forks' carry one Via
			// more): every branch still ringing ends with it, the one
			// whose tag it carries ended already when that fork
			// answered.
			for _, o := range c.Branches {
				if o.State < stConfirmed {
					targets = append(targets, o)
				}
			}
		} else if tagged && b.State > stConfirmed {
			t.ignore("after_final", h.callID, what)
			return
		} else if tagged {
			targets = append(targets, b)
		} else if p := c.pending(); p != nil {
			targets = append(targets, p)
		} else {
			// The proxy's final answer for the whole call, with the tag of
			// a branch that never rang: every early branch ends.
			for _, o := range c.Branches {
				if o.State < stConfirmed {
					targets = append(targets, o)
				}
			}
		}
		if len(targets) == 0 {
			t.ignore("after_final", h.callID, what)
			return
		}
		for _, b := range targets {
			t.terminate(c, b, ev, ev, code, now)
		}
	}
	t.sync(c)
}

// failedOffer undoes the hold change of a refused re-INVITE or UPDATE
// and ends a dialog the peer says is gone (481, 408: RFC 5057).
func (t *Tracker) failedOffer(h *dialogHeaders, code int, now int64) {
	c, b, s := t.lookup(h)
	if c == nil || b == nil || b.State != stConfirmed {
		return
	}
	if code == 481 || code == 408 {
		t.terminate(c, b, evError, evError, code, now)
		t.sync(c)
		return
	}
	if b.OfferSeq[s] == h.cseq.SeqNo && b.Hold[s] != b.PrevHold[s] {
		b.Hold[s] = b.PrevHold[s]
		b.OfferSeq[s] = 0
		t.sync(c)
	}
}

// forksOwn reports whether res is a fork's own answer to the INVITE, as
// the proxy received it: it carries one Via more than the call's INVITE
// as the proxy received it (InviteVias, 0 while unknown).
func (c *call) forksOwn(res *sip.Response) bool {
	return c.InviteVias > 0 && len(res.GetHeaders("Via")) > c.InviteVias
}
