package pa

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/aor"
)

// onSubscribe handles a SUBSCRIBE (RFC 6665 §4.2).
func (s *Server) onSubscribe(req *sip.Request, tx sip.ServerTransaction) {
	evHeader := headerValue(req, "Event")
	ev, ok := normalizeEvent(evHeader)
	if !ok {
		s.met.subscribe("unknown", "489")
		s.reply(req, tx, 489, "Bad Event", sip.NewHeader("Allow-Events", allowEvents))
		return
	}
	exp, ok := expiresOf(req)
	if !ok {
		s.met.subscribe(ev, "400")
		s.reply(req, tx, 400, "Bad Expires")
		return
	}
	if why := insecureSIPS(req); why != "" {
		s.met.subscribe(ev, "403")
		s.reply(req, tx, 403, why)
		return
	}
	d, tooShort := s.grant(exp)
	if tooShort {
		s.met.subscribe(ev, "423")
		s.reply(req, tx, 423, "Interval Too Brief", s.minExpiresHeader())
		return
	}
	from, to, cid, cseq := req.From(), req.To(), req.CallID(), req.CSeq()
	if from == nil || to == nil || cid == nil || cseq == nil {
		s.met.subscribe(ev, "400")
		s.reply(req, tx, 400, "Missing Header")
		return
	}
	fromTag, _ := from.Params.Get("tag")
	toTag, _ := to.Params.Get("tag")
	if fromTag == "" {
		s.met.subscribe(ev, "400")
		s.reply(req, tx, 400, "Missing From Tag")
		return
	}
	key := dialogKey{callID: cid.Value(), fromTag: fromTag}
	if toTag != "" {
		s.refresh(req, tx, key, toTag, ev, d, cseq.SeqNo)
		return
	}
	s.initial(req, tx, key, ev, eventID(evHeader), d, cseq.SeqNo)
}

// initial handles an initial SUBSCRIBE: a new dialog, or a fetch.
func (s *Server) initial(req *sip.Request, tx sip.ServerTransaction, key dialogKey, ev, evID string, d time.Duration, cseq uint32) {
	ct := req.Contact()
	if ct == nil {
		s.met.subscribe(ev, "400")
		s.reply(req, tx, 400, "Missing Contact")
		return
	}
	presURI := aor.KeyOfURI(&req.To().Address)
	watcherURI := aor.KeyOfURI(&req.From().Address)
	if err := s.nobodyAtGateway(presURI); err != nil {
		s.met.subscribe(ev, "404")
		s.met.gatewayError()
		s.log.Info("subscription refused: the gateway's address names no one", "presentity", presURI, "watcher", watcherURI, "event", ev, "err", err)
		s.reply(req, tx, 404, "Not Found")
		return
	}
	action := s.authorize(presURI, watcherURI)
	if ev == EventWinfo {
		// Watcher information is the owner's (RFC 3857 §5.1).
		action = actionAllow
		if watcherURI != presURI {
			action = actionDeny
		}
	}
	if action == actionDeny {
		s.met.subscribe(ev, "403")
		s.reply(req, tx, 403, "Forbidden")
		return
	}
	var routes []string
	for _, h := range req.GetHeaders("Record-Route") {
		if rr, ok := h.(*sip.RecordRouteHeader); ok {
			routes = append(routes, rr.Address.String())
		}
	}
	now := s.clk.Now()
	local := s.contactFor(req.Transport())
	w := &watcher{
		key: key, toTag: sip.GenerateTagN(16),
		presURI: presURI, watcherURI: watcherURI, event: ev, eventID: evID,
		contact: ct.Address.String(), routeSet: routes, localContact: local.String(),
		flow: req.Source(), flowTransport: req.Transport(),
		userAgent: headerValue(req, "User-Agent"), remoteCSeq: cseq,
		expires: now.Add(d), status: "active", created: now,
		cseqRes: cseqBlock, versionRes: cseqBlock,
	}
	if action == actionPending {
		w.status = "pending"
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		s.reply(req, tx, 503, "Service Unavailable")
		return
	}
	if old := s.subs[key]; old != nil && !old.final {
		// A retransmission answered already, or a forked request: 482.
		s.mu.Unlock()
		s.reply(req, tx, 482, "Loop Detected")
		return
	}
	if w.status == "pending" && ev == EventPresence && s.servedByGateway(presURI) && s.activeSibling(presURI, watcherURI, w) {
		w.status = "active" // the owner approved this watcher already
	}
	var wait *flushWait
	if d == 0 {
		w.fetch, w.final, w.reason = true, true, "timeout"
		w.pres = s.presentity(presKey{presURI, winfoOr(ev)})
	} else {
		s.attach(w)
		wait = s.markWatcher(w)
	}
	s.mu.Unlock()
	if wait != nil {
		if err := s.await(wait); err != nil {
			s.log.Warn("subscription not stored", "presentity", presURI, "watcher", watcherURI, "event", ev, "err", err)
		}
	}
	s.met.subscribe(ev, "200")
	s.accept(req, tx, w.toTag, d)
	s.mu.Lock()
	s.kick(w)
	s.mu.Unlock()
	s.gatewayAdded(w)
}

// secureTransport reports whether sipgo's transport name is TLS-protected.
func secureTransport(tr string) bool {
	tr = strings.ToUpper(tr)
	return tr == "TLS" || tr == "WSS"
}

// insecureSIPS returns the reason phrase of the refusal of a request that
// names a sips: URI (Request-URI, From or Contact) but did not arrive over
// TLS or WSS (RFC 3261 §26.2.2, RFC 5630 §4.1), or "".
func insecureSIPS(req *sip.Request) string {
	if secureTransport(req.Transport()) {
		return ""
	}
	switch {
	case req.Recipient.IsEncrypted():
		return "sips: Request-URI requires TLS"
	case req.From() != nil && req.From().Address.IsEncrypted():
		return "sips: watcher requires TLS"
	case req.Contact() != nil && req.Contact().Address.IsEncrypted():
		return "sips: Contact requires TLS"
	}
	return ""
}

// winfoOr maps a watched event to its presentity key's event.
func winfoOr(ev string) string {
	if ev == EventWinfo {
		return EventWinfo
	}
	return sourceEvent(ev)
}

// accept sends the 200 of a SUBSCRIBE.
func (s *Server) accept(req *sip.Request, tx sip.ServerTransaction, toTag string, d time.Duration) {
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	if to := res.To(); to != nil {
		to.Params.Add("tag", toTag) // replaces the one sipgo made up
	}
	res.AppendHeader(&sip.ContactHeader{Address: s.contactFor(req.Transport())})
	res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(d/time.Second))))
	s.respond(tx, res)
}

// refresh handles an in-dialog SUBSCRIBE: a refresh, or Expires: 0.
func (s *Server) refresh(req *sip.Request, tx sip.ServerTransaction, key dialogKey, toTag, ev string, d time.Duration, cseq uint32) {
	s.mu.Lock()
	w := s.subs[key]
	if w == nil || w.final || w.toTag != toTag || w.event != ev {
		s.mu.Unlock()
		s.met.subscribe(ev, "481")
		s.reply(req, tx, 481, "Subscription Does Not Exist")
		return
	}
	if cseq <= w.remoteCSeq {
		s.mu.Unlock()
		s.met.subscribe(ev, "500")
		s.reply(req, tx, 500, "CSeq Out of Order")
		return
	}
	w.remoteCSeq = cseq
	if ct := req.Contact(); ct != nil {
		w.contact = ct.Address.String()
	}
	w.flow, w.flowTransport = req.Source(), req.Transport()
	// The watcher is there, at its Contact now: the NOTIFYs that failed
	// before (to the address it may have left) count no more, and the
	// next one goes now rather than after their backoff.
	w.failures, w.retryAt = 0, time.Time{}
	w.refreshes++
	if d == 0 {
		s.terminate(w, "timeout")
		s.mu.Unlock()
		s.met.subscribe(ev, "200")
		s.accept(req, tx, toTag, 0)
		return
	}
	w.expires = s.clk.Now().Add(d)
	s.schedule(w)
	wait := s.markWatcher(w)
	s.mu.Unlock()
	if err := s.await(wait); err != nil {
		s.log.Warn("subscription refresh not stored", "presentity", w.presURI, "err", err)
	}
	s.met.subscribe(ev, "200")
	s.accept(req, tx, toTag, d)
	s.mu.Lock()
	s.kick(w)
	s.mu.Unlock()
}

// presentity returns (creating) the state of k (s.mu held).
func (s *Server) presentity(k presKey) *presentity {
	pr := s.pres[k]
	if pr == nil {
		pr = &presentity{key: k, watchers: map[*watcher]struct{}{}}
		s.pres[k] = pr
	}
	return pr
}

// attach adds a new subscription (s.mu held).
func (s *Server) attach(w *watcher) {
	w.pres = s.presentity(presKey{w.presURI, winfoOr(w.event)})
	w.pres.watchers[w] = struct{}{}
	s.subs[w.key] = w
	s.schedule(w)
	if w.event == EventPresence {
		s.watchersChanged(w.presURI)
	}
	s.tellWatchers(w.presURI)
}

// tellWatchers gives OnWatchers the presentity's watchers (s.mu held).
func (s *Server) tellWatchers(presURI string) {
	if s.o.OnWatchers == nil {
		return
	}
	ws := []WatcherState{}
	for _, ev := range []string{EventPresence, EventDialog, EventSLA, EventMWI, EventWinfo} {
		if pr := s.pres[presKey{presURI, ev}]; pr != nil {
			for x := range pr.watchers {
				ws = append(ws, WatcherState{URI: x.watcherURI, Event: x.event, Status: x.status})
			}
		}
	}
	sort.Slice(ws, func(i, j int) bool {
		if ws[i].URI != ws[j].URI {
			return ws[i].URI < ws[j].URI
		}
		return ws[i].Event < ws[j].Event
	})
	s.o.OnWatchers(presURI, ws)
}

// schedule arms w's next timer: its retry or its expiry (s.mu held).
func (s *Server) schedule(w *watcher) {
	at := w.expires
	if !w.retryAt.IsZero() && w.retryAt.Before(at) {
		at = w.retryAt
	}
	s.subSched.Schedule(w, at)
}

// terminate ends w: it is forgotten and its final NOTIFY sent (s.mu held).
func (s *Server) terminate(w *watcher, reason string) {
	if w.final {
		return
	}
	w.reason = reason
	s.finish(w)
	if !s.notifies(w) {
		// Several instances: the owner of the shard sends the final
		// NOTIFY once it reads the removal.
		s.forget(w)
		return
	}
	s.kick(w)
}

// finish marks w final and takes it out of its presentity, the store (a
// removal, unless a fetch) and the watcher lists (s.mu held).
func (s *Server) finish(w *watcher) {
	w.final = true
	if w.pres != nil {
		delete(w.pres.watchers, w)
		s.gc(w.pres)
	}
	delete(s.notifiedW, w.key)
	if !w.fetch && !w.noWrite {
		s.goneW[w.key] = w.record()
		delete(s.dirtyW, w.key)
		s.kickWriter()
	}
	if w.event == EventPresence {
		s.watchersChanged(w.presURI)
	}
	s.tellWatchers(w.presURI)
	s.gatewayRemoved(w)
}

// forget removes w once its last NOTIFY is done (s.mu held).
func (s *Server) forget(w *watcher) {
	if w.removed {
		return
	}
	w.removed = true
	s.subSched.Cancel(w)
	if w.pres != nil {
		s.gc(w.pres)
	}
	if s.subs[w.key] == w {
		delete(s.subs, w.key)
	}
	if !w.final {
		s.finish(w)
	}
	s.met.ended(w.event)
}

// gc drops a presentity without publications or watchers (s.mu held).
func (s *Server) gc(pr *presentity) {
	if len(pr.pubs) == 0 && len(pr.watchers) == 0 && s.pres[pr.key] == pr {
		delete(s.pres, pr.key)
	}
}

// watchersChanged tells the presentity's presence.winfo watchers (s.mu held).
func (s *Server) watchersChanged(presURI string) {
	if pr := s.pres[presKey{presURI, EventWinfo}]; pr != nil {
		now := s.clk.Now()
		for x := range pr.watchers {
			x.touch(now)
			s.kick(x)
		}
	}
}

// touch records a change for the latency metric.
func (w *watcher) touch(now time.Time) {
	if w.changedAt.IsZero() {
		w.changedAt = now
	}
}

// fireWatchers handles due expiries and retries. An expiry is handled
// first: a retry due with it sends the terminated NOTIFY, not a last
// active one.
func (s *Server) fireWatchers(now time.Time, due []*watcher) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range due {
		if w.removed {
			continue
		}
		if !w.final && !w.expires.After(now) {
			// Several instances: the owner writes the end; the others
			// forget the subscription.
			w.noWrite = !s.sends(w.presURI)
			s.terminate(w, "timeout")
			if s.o.Cluster != nil {
				s.fenceGone(w, s.fenceOf(w.presURI), true)
			}
			if w.removed {
				continue
			}
		}
		if !w.retryAt.IsZero() && !w.retryAt.After(now) {
			w.retryAt = time.Time{}
			if !w.inFlight {
				s.startNotify(w)
			}
		}
		s.rearm(w)
	}
}

// rearm schedules w's next timer after a fire or a failed NOTIFY: a live
// subscription its expiry or its retry, whichever comes first; a
// terminated one its retry, which sends its last NOTIFY (s.mu held).
func (s *Server) rearm(w *watcher) {
	switch {
	case !w.final:
		s.schedule(w)
	case !w.retryAt.IsZero():
		s.subSched.Schedule(w, w.retryAt)
	}
}

// await waits for a batch to be written.
func (s *Server) await(w *flushWait) error {
	if w == nil {
		return nil
	}
	select {
	case <-w.done:
		return w.err
	case <-s.ctx.Done():
		return context.Canceled
	}
}
