package usrloc

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/event"
)

// HandleSIP takes a mirrored REGISTER request or reply. Anything else is
// ignored. A replicate copy is applied at once; a traced/HEP request is
// remembered until its reply; a 2xx reply replaces the AoR's bindings.
func (t *Tracker) HandleSIP(ctx context.Context, m event.SIP) {
	switch msg := m.Msg.(type) {
	case *sip.Request:
		if msg.Method != sip.REGISTER {
			return
		}
		t.handleRequest(msg, m.Source)
	case *sip.Response:
		if cs := msg.CSeq(); cs == nil || cs.MethodName != sip.REGISTER {
			return
		}
		t.handleResponse(msg, m.Source)
	}
}

func (t *Tracker) handleRequest(req *sip.Request, src event.Source) {
	reg, err := ParseRegister(req, t.cfg.PublishHeader)
	callID := ""
	if c := req.CallID(); c != nil {
		callID = c.Value()
	}
	if src == event.SourceReplicate || src == event.SourceJSON {
		if err != nil {
			t.reject(err, src, callID)
			return
		}
		t.update(func(now time.Time, ch *[]change) {
			t.applyStatement(now, reg.AoR, reg.Contacts, reg.Expires, reg.Wildcard, txn{reg.CallID, reg.CSeq}, false, reg.Publish, ch)
		})
		return
	}
	// Traced or HEP: an observation. A binding query (no Contact) is
	// legitimate; its 2xx still lists the bindings.
	if err != nil && !errors.Is(err, ErrNoContact) {
		t.reject(err, src, callID)
		return
	}
	t.mu.Lock()
	t.remember(reg)
	t.mu.Unlock()
}

// remember stores a traced request, evicting the oldest beyond PendingMax.
func (t *Tracker) remember(reg Register) {
	key := pendingKey(reg.CallID, reg.CSeq)
	t.seq++
	if old := t.ring[t.ringPos]; old != "" {
		if p, ok := t.pending[old]; ok && p.seq == t.seq-uint64(len(t.ring)) {
			delete(t.pending, old)
		}
	}
	t.ring[t.ringPos] = key
	t.ringPos = (t.ringPos + 1) % len(t.ring)
	t.pending[key] = pendingReq{reg: reg, at: t.clock.Now(), seq: t.seq}
}

func pendingKey(callID string, cseq uint32) string {
	var n [10]byte
	return callID + "\x00" + string(strconv.AppendUint(n[:0], uint64(cseq), 10))
}

func (t *Tracker) handleResponse(res *sip.Response, src event.Source) {
	if res.IsProvisional() {
		return
	}
	callID := ""
	var cseq uint32
	if c := res.CallID(); c != nil {
		callID = c.Value()
	}
	if c := res.CSeq(); c != nil {
		cseq = c.SeqNo
	}
	t.mu.Lock()
	key := pendingKey(callID, cseq)
	p, havePending := t.pending[key]
	delete(t.pending, key)
	if havePending && t.clock.Now().Sub(p.at) > pendingTTL {
		havePending = false
	}
	t.mu.Unlock()
	if !res.IsSuccess() {
		t.count("reply_not_2xx")
		t.log.Debug("usrloc: REGISTER reply changes nothing", "status", res.StatusCode, "call_id", callID)
		return
	}
	reg, err := ParseRegisterReply(res)
	if err != nil {
		t.reject(err, src, callID)
		return
	}
	var req *Register
	if havePending {
		req = &p.reg
	}
	contacts := make([]event.Contact, 0, len(reg.Contacts))
	for _, c := range reg.Contacts {
		if c.Expires < 0 {
			if c.Expires = grantedFallback(c.URI, req, reg.Expires); c.Expires != reg.Expires {
				// What was asked, not granted: clamped as a request's is.
				c.Expires = t.expiresFor(c.Expires, -1)
			}
		}
		if c.Expires == 0 {
			continue
		}
		if req != nil {
			for _, rc := range req.Contacts {
				if rc.URI == c.URI {
					c.UserAgent = rc.UserAgent
					if c.Instance == "" {
						c.Instance = rc.Instance
					}
				}
			}
		}
		contacts = append(contacts, c)
	}
	var flag *bool
	if req != nil {
		flag = req.Publish
	}
	t.update(func(now time.Time, ch *[]change) {
		key := lateKey{reg.AoR, reg.CallID}
		last, seen := t.replied[key]
		if seen && now.Before(last.until) && reg.CSeq <= last.cseq {
			t.count("reply_stale")
			t.log.Debug("usrloc: late copy of a REGISTER 2xx changes nothing", "aor", reg.AoR,
				"call_id", callID, "cseq", reg.CSeq, "applied_cseq", last.cseq)
			return
		}
		t.applyStatement(now, reg.AoR, contacts, -1, false, txn{}, true, flag, ch)
		t.replied[key] = replied{cseq: reg.CSeq, until: now.Add(lateHorizon)}
	})
}

// grantedFallback finds the expiry of a reply contact without an expires
// parameter: the reply's Expires header (what was granted), else what the
// request asked for that contact (its expires parameter, else the
// request's Expires header); -1 (default_expires) otherwise. The request's
// values apply only to its own contacts: a reply lists the other devices'
// bindings too.
func grantedFallback(uri string, req *Register, replyExpires int) int {
	if replyExpires >= 0 {
		return replyExpires
	}
	if req != nil {
		for _, rc := range req.Contacts {
			if rc.URI != uri {
				continue
			}
			if rc.Expires >= 0 {
				return rc.Expires
			}
			return req.Expires
		}
	}
	return -1
}
