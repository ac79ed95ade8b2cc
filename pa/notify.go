package pa

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/puaside/puaside/internal/siplisten"
)

// kick asks for a NOTIFY with w's current state (s.mu held). With one in
// flight or backing off, the change waits and is coalesced.
func (s *Server) kick(w *watcher) {
	if w.removed {
		return
	}
	w.dirty = true
	if w.inFlight || !w.retryAt.IsZero() || s.stopped || !s.running || !s.notifies(w) {
		return
	}
	s.startNotify(w)
}

// startNotify builds w's next NOTIFY and sends it (s.mu held).
func (s *Server) startNotify(w *watcher) {
	if !s.notifies(w) {
		w.dirty = true // the shard's owner notifies
		return
	}
	w.inFlight, w.dirty = true, false
	req, wait, sum := s.buildNotify(w)
	changedAt, final := w.changedAt, w.final
	w.changedAt = time.Time{}
	var tok fenceToken
	if s.o.Cluster != nil {
		tok = s.fenceOf(w.presURI)
	}
	s.wg.Add(1)
	go s.sendNotify(w, req, wait, notifyMeta{changedAt: changedAt, final: final, sum: sum, fence: tok, refreshes: w.refreshes})
}

// buildNotify renders w's NOTIFY and takes its CSeq (s.mu held). When the
// CSeq reserve is used up a new block is reserved; wait is the store write
// that must be done before the NOTIFY goes out; sum is the digest of the
// state it tells.
func (s *Server) buildNotify(w *watcher) (*sip.Request, *flushWait, uint64) {
	w.cseq++
	var wait *flushWait
	var body []byte
	var ct string
	state := w.status
	now := s.clk.Now()
	if w.final {
		state = "terminated;reason=" + w.reason
	} else {
		left := int(w.expires.Sub(now) / time.Second)
		state += ";expires=" + strconv.Itoa(max(left, 0))
	}
	if w.status == "active" || w.event == EventWinfo {
		w.version++
		body, ct = s.body(w)
	}
	var sum uint64
	if s.o.Cluster != nil {
		sum = stateDigest(w.status, body, w.version)
	}
	if !w.fetch && !w.final && (w.cseq >= w.cseqRes || w.version >= w.versionRes) {
		w.cseqRes = w.cseq + cseqBlock
		w.versionRes = w.version + cseqBlock
		if s.o.Cluster != nil {
			wait = s.markNotified(w)
		} else {
			wait = s.markWatcher(w)
		}
	}
	contact := s.contactFor(w.flowTransport)
	s.sipMu.RLock()
	laddr := s.udpLaddr
	s.sipMu.RUnlock()

	var ruri sip.Uri
	if err := sip.ParseUri(w.contact, &ruri); err != nil {
		ruri = sip.Uri{Scheme: "sip", Host: "invalid"}
	}
	req := sip.NewRequest(sip.NOTIFY, ruri)
	var to, from sip.Uri
	_ = sip.ParseUri(w.watcherURI, &to)
	_ = sip.ParseUri(w.presURI, &from)
	fh := &sip.FromHeader{Address: from, Params: sip.NewParams()}
	fh.Params.Add("tag", w.toTag)
	req.AppendHeader(fh)
	th := &sip.ToHeader{Address: to, Params: sip.NewParams()}
	th.Params.Add("tag", w.key.fromTag)
	req.AppendHeader(th)
	cid := sip.CallIDHeader(w.key.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: w.cseq, MethodName: sip.NOTIFY})
	for _, r := range w.routeSet {
		var u sip.Uri
		if err := sip.ParseUri(r, &u); err == nil {
			req.AppendHeader(&sip.RouteHeader{Address: u})
		}
	}
	req.AppendHeader(&sip.ContactHeader{Address: contact})
	evh := w.event
	if w.eventID != "" {
		evh += ";id=" + w.eventID
	}
	req.AppendHeader(sip.NewHeader("Event", evh))
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	if body != nil {
		req.AppendHeader(sip.NewHeader("Content-Type", ct))
		req.SetBody(body)
	}
	if len(w.routeSet) == 0 && w.flow != "" && flowTransport(w.flowTransport) &&
		(strings.ToUpper(w.flowTransport) != "TLS" || s.hasConnection("TLS", w.flow)) {
		// A TLS watcher whose connection is gone is reached at its Contact.
		// Back over the watcher's own connection, whatever its Contact.
		req.SetDestination(w.flow)
		req.SetTransport(strings.ToUpper(w.flowTransport))
	}
	if req.Transport() == "UDP" && siplisten.TooLargeForUDP(req) {
		// Too large for UDP (RFC 3261 §18.1.1; sipgo refuses it): the
		// same address over TCP.
		req.SetTransport("TCP")
	} else if laddr.IP != nil && req.Transport() == "UDP" {
		laddr.Copy(&req.Laddr)
	}
	return req, wait, sum
}

// notifyMeta is what sendNotify knows of its NOTIFY: when the state it
// tells changed, whether it is the subscription's terminated NOTIFY, the
// digest of its state and the fence it was sent under (with a Cluster).
type notifyMeta struct {
	changedAt time.Time
	final     bool
	sum       uint64
	fence     fenceToken
	refreshes uint64 // the watcher's refreshes when it was sent
}

// sendNotify runs one NOTIFY transaction and acts on its outcome.
func (s *Server) sendNotify(w *watcher, req *sip.Request, wait *flushWait, m notifyMeta) {
	defer s.wg.Done()
	changedAt, final, sum := m.changedAt, m.final, m.sum
	if err := s.await(wait); err != nil && !errors.Is(err, context.Canceled) {
		if refusedFor(err, m.fence) {
			// The shard has a new owner: its reservation was refused, and
			// a CSeq not reserved is not sent.
			s.log.Info("NOTIFY not sent: the shard has a new owner", "presentity", w.presURI, "watcher", w.watcherURI,
				"shard", m.fence.shard, "epoch", m.fence.epoch)
			s.mu.Lock()
			w.inFlight, w.dirty = false, true
			w.cseqRes, w.versionRes = w.cseq, w.version // the next NOTIFY reserves again
			s.mu.Unlock()
			return
		}
		s.log.Warn("CSeq reservation not stored; sending anyway", "presentity", w.presURI, "err", err)
	}
	s.sipMu.RLock()
	cl := s.cl
	s.sipMu.RUnlock()
	code := 0
	var err error
	if tr := req.Transport(); cl != nil && (tr == "WS" || tr == "WSS") && !s.hasConnection(tr, req.Destination()) {
		// A browser cannot be dialled: its connection is the only way.
		err = fmt.Errorf("pa: the watcher's %s connection from %s is closed", tr, req.Destination())
	} else if cl != nil {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RequestTimeout)
		var res *sip.Response
		res, err = cl.Do(ctx, req)
		cancel()
		if err == nil {
			code = res.StatusCode
		}
	} else {
		err = errors.New("pa: not started")
	}
	now := s.clk.Now()
	s.met.notified(w.event, code, err, changedAt, now)
	if err != nil {
		s.log.Debug("NOTIFY failed", "presentity", w.presURI, "watcher", w.watcherURI, "err", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w.inFlight = false
	if w.removed {
		return
	}
	switch {
	case code >= 200 && code < 300:
		w.failures = 0
		if final {
			s.forget(w)
			return
		}
		if s.o.Cluster != nil && w.notified != sum {
			w.notified = sum
			s.markNotified(w)
		}
		if w.dirty && !s.stopped {
			s.startNotify(w)
		}
	case err != nil && s.ctx.Err() != nil:
		// Stopping: the dialog stays stored and continues after a restart.
		w.dirty = true
	case (err != nil || code == 408 || code >= 500 && code < 600) && m.refreshes != w.refreshes:
		// Sent before a refresh, to the Contact the watcher may have left:
		// the state goes at once to the one it gives now, and this
		// failure does not count.
		w.dirty = true
		if !s.stopped {
			s.startNotify(w)
		}
	case err != nil || code == 408 || code >= 500 && code < 600:
		w.failures++
		if w.failures >= s.cfg.MaxRetries {
			s.log.Info("subscription ended: NOTIFY failed too often", "presentity", w.presURI, "watcher", w.watcherURI,
				"event", w.event, "failures", w.failures, "status", code, "err", err)
			s.forget(w)
			s.fenceGone(w, m.fence, false)
			return
		}
		w.dirty = true
		w.retryAt = now.Add(s.backoff(w.failures))
		s.rearm(w)
	default:
		// 481 (RFC 6665 §4.2.2) or any other final refusal ends it.
		s.log.Info("subscription ended by the watcher", "presentity", w.presURI, "watcher", w.watcherURI,
			"event", w.event, "status", code)
		s.forget(w)
		s.fenceGone(w, m.fence, false)
	}
}

// flowTransport reports whether NOTIFYs of a subscription received over
// transport go back over its connection: TLS, WS and WSS.
func flowTransport(tr string) bool {
	switch strings.ToUpper(tr) {
	case "TLS", "WS", "WSS":
		return true
	}
	return false
}

// hasConnection reports whether sipgo holds a connection of transport to
// addr.
func (s *Server) hasConnection(transport, addr string) bool {
	s.sipMu.RLock()
	ua := s.ua
	s.sipMu.RUnlock()
	if ua == nil {
		return false
	}
	c, err := ua.TransportLayer().GetConnection(strings.ToLower(transport), addr)
	return err == nil && c != nil
}

// backoff is the wait before retry n (1, 2, ...): between half and all of
// retry_min × 2^(n-1), capped at retry_max.
func (s *Server) backoff(n int) time.Duration {
	d := s.cfg.RetryMin
	for i := 1; i < n && d < s.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, s.cfg.RetryMax)
	return d/2 + rand.N(d/2+1)
}

// errTimeout marks a NOTIFY that got no final reply in time.
var errTimeout = errors.New("pa: NOTIFY timed out")

// isTimeout reports whether a transaction error is a timeout.
func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sip.ErrTransactionTimeout)
}
