package pua

import (
	"log/slog"
	"math/rand/v2"
	"time"
)

// expBackoff returns the delay before retry number attempt (1-based):
// lo·2^(attempt-1) capped at hi, with jitter in [d/2, d].
func expBackoff(lo, hi time.Duration, attempt int) time.Duration {
	d := lo
	for i := 1; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(half+1)
}

// refusedAt returns when a record refused for the n-th time in a row is
// tried again, never after the end of its lifetime (endAt, Unix seconds,
// 0 = none) so that the lifetime still ends on time. A lifetime that has
// ended already does not shorten the wait (the retry would come at once,
// again and again).
func (e *Engine) refusedAt(now time.Time, n int32, endAt int64) (time.Time, time.Duration) {
	d := expBackoff(e.cfg.RefusedRetryMin, e.cfg.RefusedRetryMax, int(n))
	at := now.Add(d)
	if end := time.Unix(endAt, 0); endAt != 0 && end.After(now) && end.Before(at) {
		at = end
	}
	return at, d
}

// refusePub marks r refused, its document of generation gen among the
// refused (a removal does not send it ahead of itself again, see
// nextPubOp), and arms its slow retry: a refused publication is never left
// for good, because its owner does not ask again for a state it already
// gave. Shard locked.
//
// When the owner has given a newer state meanwhile (the refused request
// was in flight), that state is sent at once instead: it has not been
// refused.
func (e *Engine) refusePub(r *pubRec, gen uint64, status int, now time.Time, log *slog.Logger) {
	r.docRefused(gen)
	if r.gen > gen && !r.remove {
		e.m.Refused("PUBLISH", r.key.Event, status)
		log.Info("publication refused, sending the newer state", "status", status)
		e.queue.push(r)
		return
	}
	r.failed, r.state = true, pubFailed
	x := r.more()
	x.refusals++
	at, d := e.refusedAt(now, x.refusals, r.endAt)
	x.retryAt = at.UnixNano()
	e.m.Refused("PUBLISH", r.key.Event, status)
	log.Info("refused publication will be tried again", "status", status, "refusals", x.refusals, "retry_in", d)
	e.sched.Schedule(r, at)
}

// retryRefusedPub re-arms a refused publication whose retry time has
// come; nextPubOp then sends it again. Shard locked.
func (e *Engine) retryRefusedPub(r *pubRec, now time.Time) {
	x := r.rare
	if !r.failed || x == nil || x.retryAt == 0 || now.UnixNano() < x.retryAt {
		return
	}
	r.failed, x.retryAt = false, 0
	e.m.RefusedRetry("PUBLISH", r.key.Event)
}

// clearRefusal forgets r's refusals (accepted, or a new state from its
// owner). Shard locked.
func (r *pubRec) clearRefusal() {
	if r.rare != nil {
		r.rare.refusals, r.rare.retryAt = 0, 0
	}
}

// refuseSub marks a subscription refused and arms its slow retry (a
// phone answering 489 while it boots gets its subscription later).
// Shard locked.
func (e *Engine) refuseSub(r *subRec, status int, now time.Time, log *slog.Logger) {
	r.failed, r.state = true, StateFailed
	r.refusals++
	at, d := e.refusedAt(now, r.refusals, 0)
	r.retryAt = at.UnixNano()
	e.m.Refused("SUBSCRIBE", r.key.Event, status)
	log.Info("refused subscription will be tried again", "status", status, "refusals", r.refusals, "retry_in", d)
	e.sched.Schedule(r, at)
}

// retryRefusedSub re-arms a refused subscription whose retry time has
// come. Shard locked.
func (e *Engine) retryRefusedSub(r *subRec, now time.Time) {
	if !r.failed || r.retryAt == 0 || now.UnixNano() < r.retryAt {
		return
	}
	r.failed, r.retryAt = false, 0
	e.m.RefusedRetry("SUBSCRIBE", r.key.Event)
}

// clearRefusal forgets r's refusals. Shard locked.
func (r *subRec) clearRefusal() { r.refusals, r.retryAt = 0, 0 }
