package pua

import (
	"regexp"
	"time"
)

// Claims at start. Every record carries its owner's flag. The records
// loaded from the store are unclaimed until their owner publishes or
// subscribes the same key again, or claims it with Claim or
// ClaimSubscription. Once every owner named in Options.Owners has called
// ClaimsDone, or claim_timeout after Start, the sweep removes at the server
// every loaded record of those owners that nobody claimed. Until then an
// unclaimed record that the server holds is refreshed as usual, and one the
// server never accepted is not sent at all. Records of other flags (the
// management API's) are never swept, nor is a publication the server holds
// whose lifetime is bounded (desired_expires): it ends with its lifetime.

// claimState is the engine's claim window. Guarded by Engine.cmu.
type claimState struct {
	owners map[int]bool // owner flags still claiming
	open   bool         // the window is open: the sweep has not run
	timer  Timer
}

// ownerFlag reports whether records of flag belong to an owner that claims
// them at start.
func (e *Engine) ownerFlag(flag int) bool {
	_, ok := e.owners[flag]
	return ok
}

// openClaims starts the claim window at Start.
func (e *Engine) openClaims() {
	e.cmu.Lock()
	defer e.cmu.Unlock()
	if len(e.owners) == 0 {
		return
	}
	e.claims.open = true
	e.claims.owners = make(map[int]bool, len(e.owners))
	for f := range e.owners {
		e.claims.owners[f] = true
	}
	e.claims.timer = e.clock.AfterFunc(e.cfg.ClaimTimeout, func() {
		e.cmu.Lock()
		if !e.claims.open {
			e.cmu.Unlock()
			return
		}
		var late []int
		for f := range e.claims.owners {
			late = append(late, f)
		}
		e.claims.open = false
		e.cmu.Unlock()
		e.log.Warn("claim timeout: sweeping without every owner's claims", "owners_not_done", late,
			"claim_timeout", e.cfg.ClaimTimeout)
		e.sweep()
	})
}

// ClaimsDone tells the engine that the owner of flag has claimed every
// loaded record it still wants. When the last owner is done the unclaimed
// records are removed. Calling it for a flag that is not an owner, or after
// the sweep, does nothing.
func (e *Engine) ClaimsDone(flag int) {
	e.cmu.Lock()
	if !e.claims.open || !e.claims.owners[flag] {
		e.cmu.Unlock()
		return
	}
	delete(e.claims.owners, flag)
	if len(e.claims.owners) > 0 {
		e.cmu.Unlock()
		return
	}
	e.claims.open = false
	if e.claims.timer != nil {
		e.claims.timer.Stop()
	}
	e.cmu.Unlock()
	e.sweep()
}

// ClaimsOpen reports whether the claim window is still open (the sweep has
// not run yet).
func (e *Engine) ClaimsOpen() bool {
	e.cmu.Lock()
	defer e.cmu.Unlock()
	return e.claims.open
}

// Claim keeps a loaded publication that its owner still wants, unchanged:
// the engine goes on refreshing it. A removal still pending (stored by an
// earlier run whose owner's own state did not keep it) is called off. It
// reports whether the engine holds the publication; when it does not, the
// owner must publish it again. Publish of the same key claims it too.
func (e *Engine) Claim(key Key) bool {
	key.Event = e.ev.canon(key.Event)
	s := e.pubShard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.pubs[key]
	if r == nil {
		return false
	}
	if r.remove {
		r.remove, r.failed = false, false
		r.gen++
		e.markDirty(r, &r.dirty)
		e.kickPub(r)
	}
	e.claimPub(r)
	return true
}

// ClaimSubscription keeps a loaded subscription that its owner still
// wants, unchanged; a pending un-SUBSCRIBE is called off. It reports whether
// the engine holds the subscription. Subscribe of the same key claims it too.
func (e *Engine) ClaimSubscription(key SubKey) bool {
	key.Event = e.ev.canon(key.Event)
	s := e.subShard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.subs[key]
	if r == nil {
		return false
	}
	if r.unsub {
		r.unsub, r.failed = false, false
		r.gen++
		e.markDirty(r, &r.dirty)
		if !r.inFlight {
			r.backingOff = false
			e.queue.push(r)
		}
	}
	e.claimSub(r)
	return true
}

// claimSub clears r's unclaimed mark and lets a held SUBSCRIBE go. Shard
// locked.
func (e *Engine) claimSub(r *subRec) {
	if !r.unclaimed {
		return
	}
	r.unclaimed = false
	e.kickSub(r)
}

// claimPub clears r's unclaimed mark and lets a held initial PUBLISH go.
// Shard locked.
func (e *Engine) claimPub(r *pubRec) {
	if !r.unclaimed {
		return
	}
	r.unclaimed = false
	e.kickPub(r)
}

// sweep removes every record still unclaimed. The removals are durable:
// the rows are marked before anything is sent.
func (e *Engine) sweep() { e.sweepWhere(nil) }

// sweepWhere sweeps the unclaimed records of the presentities in (nil: all).
// With several instances, an unclaimed record of a shard another instance
// holds is only forgotten: its owner sweeps it.
func (e *Engine) sweepWhere(in func(presURI string) bool) {
	start := time.Now()
	var pubs, subs int
	elsewhere := func(presURI string) bool {
		if e.own == nil {
			return false
		}
		_, _, ok := e.own.Fence(presURI)
		return !ok
	}
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.Lock()
		for _, r := range s.pubs {
			if !r.unclaimed || (in != nil && !in(r.key.PresURI)) {
				continue
			}
			r.unclaimed = false
			if elsewhere(r.key.PresURI) {
				e.forgetPub(r)
				continue
			}
			if r.remove {
				continue
			}
			if r.etag != "" && r.endAt != 0 {
				// Its lifetime was bounded by whoever published it (a
				// publication adopted from Kamailio's pua_usrloc lasts as
				// long as the registration it stood for): it is left to
				// end then, unless its owner claims it before.
				e.log.Debug("unclaimed publication left to end with its lifetime", "aor", r.key.PresURI,
					"event", r.key.Event, "id", r.key.ID, "flag", r.flag, "end", time.Unix(r.endAt, 0))
				continue
			}
			pubs++
			e.log.Debug("removing unclaimed publication", "aor", r.key.PresURI, "event", r.key.Event,
				"id", r.key.ID, "flag", r.flag)
			if r.etag != "" && e.endDialogs(r) {
				continue
			}
			r.remove, r.failed = true, false
			r.gen++
			if r.etag == "" && !r.inFlight {
				e.dropPub(r, Result{})
				continue
			}
			e.markDirty(r, &r.dirty)
			e.kickPub(r)
		}
		for _, r := range s.subs {
			if !r.unclaimed || (in != nil && !in(r.key.PresURI)) {
				continue
			}
			r.unclaimed = false
			if elsewhere(r.key.PresURI) {
				e.forgetSub(r)
				continue
			}
			if r.unsub {
				continue
			}
			subs++
			e.log.Debug("ending unclaimed subscription", "aor", r.key.PresURI, "watcher", r.key.WatcherURI,
				"event", r.key.Event, "id", r.key.ID, "flag", r.flag)
			r.unsub, r.failed = true, false
			r.gen++
			if !r.inFlight && (r.callID == "" || r.remoteTag == "") {
				e.dropSub(r, Result{})
				continue
			}
			e.markDirty(r, &r.dirty)
			r.backingOff = false
			e.queue.push(r)
		}
		s.mu.Unlock()
	}
	for range pubs {
		e.m.Tracker("pua", "swept_publication")
	}
	for range subs {
		e.m.Tracker("pua", "swept_subscription")
	}
	e.flushSoon()
	e.log.Info("claims done: unclaimed records removed", "publications", pubs, "subscriptions", subs,
		"took", time.Since(start))
}

// dialogState matches the state element of a dialog in a dialog-info
// document (RFC 4235: <state> is a child of <dialog> only).
var dialogState = regexp.MustCompile(`(<state(?:\s[^>]*)?>)[^<]*(</state>)`)

// endDialogs turns a swept dialog publication into its terminated
// document, removed as soon as the server accepts it (see sweepDone):
// Kamailio keeps notifying the last document of a removed dialog
// publication, so a lamp goes dark only through a terminated one. It
// reports false for any other publication (removed at once). Shard locked.
func (e *Engine) endDialogs(r *pubRec) bool {
	if !r.ev.dialog || r.ev.bodyAlways || r.srvTerminated || !dialogState.Match(r.body) {
		return false
	}
	r.setDoc(dialogState.ReplaceAll(r.body, []byte("${1}terminated${2}")))
	r.sweepRemove, r.failed = true, false
	r.gen++
	e.markDirty(r, &r.dirty)
	e.kickPub(r)
	return true
}

// sweepDone turns a swept dialog publication whose terminated document the
// server has just accepted into its removal. Shard locked.
func (e *Engine) sweepDone(r *pubRec) {
	if !r.sweepRemove || r.remove || r.sentGen != r.gen {
		return
	}
	r.sweepRemove = false
	r.remove = true
	r.gen++
	e.markDirty(r, &r.dirty)
}
