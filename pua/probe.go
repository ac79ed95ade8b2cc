package pua

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// reachability is what the engine knows of the presence server: up until a
// request sent there times out, fails in transport, or gets a 408, 502,
// 503 or 504; then down until it answers again. While down, an OPTIONS
// probe goes there every probe_interval.
type reachability struct {
	down atomic.Bool // fast path for every reply

	mu        sync.Mutex
	since     time.Time // when it went down
	lastErr   string    // why
	holdUntil time.Time // a 503's Retry-After: no retry before
	probeT    Timer     // the next probe, while down
	probing   bool      // a probe is armed or in flight
	probeGen  uint64    // the current probe chain; older ones stop
}

// serverHop is the SIP URI requests to the presence server are sent to
// (outbound_proxy, else server_address); "" when presentities are
// resolved from their URIs, and then no reachability is kept.
func (e *Engine) serverHop() string {
	if e.cfg.OutboundProxy != "" {
		return e.cfg.OutboundProxy
	}
	return e.cfg.ServerAddress
}

// pubServerBound reports whether r's PUBLISHes go to the presence server.
func (e *Engine) pubServerBound(r *pubRec) bool {
	return r.proxy() == "" && e.serverHop() != ""
}

// subServerBound reports whether r subscribes to a presentity at the
// presence server (not to a phone, as BLA does, nor through a proxy of
// its own).
func (e *Engine) subServerBound(r *subRec) bool {
	return r.proxy == "" && r.target == "" && e.serverHop() != ""
}

// serverTrouble reports a reply (or its absence) that says the presence
// server cannot be reached or cannot serve now.
func serverTrouble(res Result) bool {
	switch res.Status {
	case 0, 408, 502, 503, 504:
		return true
	}
	return false
}

// noteServerResult updates the presence server's reachability from the
// outcome of a request sent there. Any shard may be locked.
func (e *Engine) noteServerResult(res Result, now time.Time) {
	if !serverTrouble(res) {
		if e.reach.down.Load() {
			e.serverIsBack(now)
		}
		return
	}
	if e.stopCtx.Err() != nil {
		return // transactions aborted by Stop say nothing of the server
	}
	why := res.Reason
	if res.Status != 0 {
		why = fmt.Sprintf("%d %s", res.Status, res.Reason)
	} else if res.Err != nil {
		why = res.Err.Error()
	}
	rc := &e.reach
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if res.Status == 503 && res.RetryAfter > 0 {
		if until := now.Add(min(res.RetryAfter, e.cfg.RefusedRetryMax)); until.After(rc.holdUntil) {
			rc.holdUntil = until
		}
	}
	rc.lastErr = why
	if !rc.down.Load() {
		rc.down.Store(true)
		rc.since = now
		e.m.ServerUp(false)
		e.log.Warn("presence server looks down, probing it", "server", e.serverHop(), "reason", why,
			"probe_interval", e.cfg.ProbeInterval)
	}
	if !rc.probing {
		rc.probing = true
		e.armProbeLocked(now)
	}
}

// armProbeLocked schedules the next probe after probe_interval, and not
// before a Retry-After ends. reach.mu locked.
func (e *Engine) armProbeLocked(now time.Time) {
	rc := &e.reach
	d := e.holdOffLocked(now, e.cfg.ProbeInterval)
	rc.probeGen++
	gen := rc.probeGen
	rc.probeT = e.clock.AfterFunc(d, func() { go e.probe(gen) })
}

// probe sends one OPTIONS to the presence server; a reply of any status
// but 408, 502, 503 and 504 marks it up, else the next probe is armed.
func (e *Engine) probe(gen uint64) {
	if e.stopCtx.Err() != nil || !e.reach.down.Load() {
		return
	}
	res := e.sendOptions()
	now := e.clock.Now()
	switch {
	case res.Status > 0:
		e.m.Probe("reply")
	case errors.Is(res.Err, context.DeadlineExceeded) || errors.Is(res.Err, sip.ErrTransactionTimeout):
		e.m.Probe("timeout")
	default:
		e.m.Probe("error")
	}
	if e.stopCtx.Err() != nil {
		return
	}
	if !serverTrouble(res) {
		e.serverIsBack(now)
		return
	}
	e.noteServerResult(res, now) // keeps the reason (and a Retry-After) fresh
	rc := &e.reach
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if !rc.down.Load() || gen != rc.probeGen {
		return // a reply to another request came first; or a newer chain runs
	}
	e.armProbeLocked(now)
}

// sendOptions sends one OPTIONS to the presence server and waits at most
// probe_interval (and request_timeout) for the reply.
func (e *Engine) sendOptions() Result {
	hop := e.serverHop()
	var ruri sip.Uri
	if err := sip.ParseUri(e.cfg.ServerAddress, &ruri); err != nil || e.cfg.ServerAddress == "" {
		if err := sip.ParseUri(hop, &ruri); err != nil {
			return Result{Err: fmt.Errorf("pua: OPTIONS %s: %w", hop, err)}
		}
	}
	from := sip.Uri{Scheme: "sip", User: "puaside", Host: ruri.Host}
	req := newRequest(sip.OPTIONS, ruri, from, ruri, sip.GenerateTagN(16), "", sip.GenerateTagN(24), 1)
	req.SetBody(nil)
	if err := e.sip.finish(req, hop); err != nil {
		return Result{Err: err}
	}
	e.sip.mu.RLock()
	cl := e.sip.cl
	e.sip.mu.RUnlock()
	if cl == nil {
		return Result{Err: errors.New("pua: OPTIONS: engine not started")}
	}
	ctx, cancel := context.WithTimeout(e.stopCtx, min(e.cfg.ProbeInterval, e.cfg.RequestTimeout))
	defer cancel()
	res, err := e.sip.roundTrip(ctx, cl, req)
	if err != nil {
		return Result{Err: fmt.Errorf("pua: OPTIONS %s: %w", hop, err)}
	}
	return txOutcome{res: res}.result()
}

// serverIsBack marks the presence server up and sends at once every
// record backing off towards it (not before a Retry-After ends), instead
// of letting each wait out a backoff of up to retry_max. Any shard may be
// locked: the records are rescheduled from another goroutine.
func (e *Engine) serverIsBack(now time.Time) {
	rc := &e.reach
	rc.mu.Lock()
	if !rc.down.Load() {
		rc.mu.Unlock()
		return
	}
	rc.down.Store(false)
	if rc.probeT != nil {
		rc.probeT.Stop()
		rc.probeT = nil
	}
	rc.probing = false
	rc.probeGen++ // a probe in flight does not arm another
	outage := now.Sub(rc.since)
	at := now
	if rc.holdUntil.After(at) {
		at = rc.holdUntil
	}
	rc.mu.Unlock()
	e.m.ServerUp(true)
	go func() {
		n := e.resendBackingOff(at)
		e.m.ReturnFlushed(n)
		e.log.Info("presence server is back", "server", e.serverHop(), "down_for", outage, "records_sent_now", n)
	}()
}

// resendBackingOff reschedules every record backing off towards the
// presence server to at; it returns how many.
func (e *Engine) resendBackingOff(at time.Time) int {
	n := 0
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.Lock()
		for _, r := range s.pubs {
			if r.backingOff && !r.deleted && !r.inFlight && e.pubServerBound(r) {
				e.sched.Schedule(r, at)
				n++
			}
		}
		for _, r := range s.subs {
			if r.backingOff && !r.deleted && !r.inFlight && e.subServerBound(r) {
				e.sched.Schedule(r, at)
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}

// holdOff stretches a retry delay d to the end of a 503's Retry-After.
func (e *Engine) holdOff(now time.Time, d time.Duration) time.Duration {
	e.reach.mu.Lock()
	defer e.reach.mu.Unlock()
	return e.holdOffLocked(now, d)
}

// holdOffLocked is holdOff with reach.mu locked.
func (e *Engine) holdOffLocked(now time.Time, d time.Duration) time.Duration {
	if hold := e.reach.holdUntil.Sub(now); hold > d {
		return hold
	}
	return d
}

// ServerReady reports, for /readyz, whether the presence server answers:
// an error naming it while it looks down (see probe_interval).
func (e *Engine) ServerReady(context.Context) error {
	if !e.reach.down.Load() {
		return nil
	}
	rc := &e.reach
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return fmt.Errorf("presence server %s unreachable for %s: %s", e.serverHop(),
		e.clock.Now().Sub(rc.since).Truncate(time.Second), rc.lastErr)
}
