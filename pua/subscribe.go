package pua

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// subRec is one subscription with the dialog the engine keeps for it.
// Guarded by its shard's mutex (the dialog index by Engine.dmu).
type subRec struct {
	task
	key   SubKey
	shard *shard
	ev    *eventInfo
	flag  int

	// desired state
	target  string
	expires time.Duration
	proxy   string
	hdrs    []Header
	ourURI  string // Contact override; "" means the engine's ContactURI
	unsub   bool
	gen     uint64
	// targetUnknown: restored from a row without its target (see
	// Record.Target); target is the notifier's Contact standing in for
	// it until the owner gives it again.
	targetUnknown bool

	// dialog
	callID       string
	localTag     string
	remoteTag    string
	cseq         uint32
	routes       []string
	remoteTarget string
	confirmed    bool // a 2xx was received: refreshes go in-dialog
	contact      string
	// unsubSent: an un-SUBSCRIBE has been sent in the dialog (a
	// terminated NOTIFY in it may be the answer to that).
	unsubSent bool
	// remoteCSeq is the CSeq of the last NOTIFY accepted in the dialog
	// (RFC 3261 §12.2.2), valid when haveRemoteCSeq. It lives in memory
	// only: the pua table has no column for it (its cseq is ours), so the
	// first NOTIFY after a restart sets it again.
	remoteCSeq     uint32
	haveRemoteCSeq bool
	// notifyMu serialises the NOTIFYs of the dialog from the CSeq check to
	// the owner's handler, so that the owner sees them in CSeq order. It is
	// taken before, never under, the shard mutex.
	notifyMu sync.Mutex

	// control
	srvExpires  int64
	nextRefresh int64 // Unix nanoseconds, so refreshes keep their spread
	sentGen     uint64
	minExp      time.Duration
	inFlight    bool
	failed      bool
	backingOff  bool
	attempt     int32
	refusals    int32 // refusals in a row (refused.go)
	retryAt     int64 // Unix nanoseconds a refused subscription is tried again; 0 = none
	deleted     bool
	dirty       bool
	storedFlag  int
	unclaimed   bool // loaded and not yet claimed by its owner (see ClaimSubscription)
	version     int32
	state       string
	lastStatus  int
	lastReason  string
	lastNotify  int64
	lastCT      string
	lastDoc     []byte
	waiters     []waiter
}

func (r *subRec) base() *task { return &r.task }

// subKind is the kind of SUBSCRIBE.
type subKind uint8

const (
	subNone subKind = iota
	subInitial
	subRefresh
	subUnsub
)

func (k subKind) String() string { return [...]string{"none", "initial", "refresh", "unsubscribe"}[k] }

// subOp is a snapshot of what one SUBSCRIBE carries.
type subOp struct {
	kind      subKind
	gen       uint64
	key       SubKey
	ruri      string
	callID    string
	localTag  string
	remoteTag string
	cseq      uint32
	routes    []string
	contact   string
	expires   int
	hdrs      []Header
	proxy     string
}

// Subscribe asks the engine to hold a subscription open (refreshing it)
// until Unsubscribe or a terminating NOTIFY. Calling it again for the same
// key updates the parameters (refreshing in-dialog) and re-arms a failed
// subscription; called while a failed un-SUBSCRIBE waits for its retry, it
// subscribes at once in a new dialog.
func (e *Engine) Subscribe(req SubscribeRequest) error {
	_, err := e.subscribe(req, false)
	return err
}

// SubscribeWait is Subscribe, then waits for the final reply of the
// SUBSCRIBE that carried this request.
func (e *Engine) SubscribeWait(ctx context.Context, req SubscribeRequest) (Result, error) {
	ch, err := e.subscribe(req, true)
	if err != nil {
		return Result{}, err
	}
	return wait(ctx, ch)
}

func (e *Engine) subscribe(req SubscribeRequest, withWaiter bool) (chan Result, error) {
	ev, err := e.ev.get(req.Event)
	if err != nil {
		e.log.Warn("subscribe refused", "aor", req.PresURI, "event", req.Event, "err", err)
		return nil, err
	}
	for what, u := range map[string]string{"presentity": req.PresURI, "watcher": req.WatcherURI, "target": req.Target} {
		if u == "" && what == "target" {
			continue
		}
		if err := checkURI(u); err != nil {
			e.log.Warn("subscribe refused", "aor", req.PresURI, "event", req.Event, "err", err)
			return nil, fmt.Errorf("pua: subscribe: %s %q: %w", what, u, err)
		}
	}
	if err := checkHeaders(req.ExtraHeaders); err != nil {
		return nil, err
	}
	if req.Expires < 0 {
		return nil, fmt.Errorf("pua: subscribe %s: negative expires", req.PresURI)
	}
	if e.isStopped() {
		return nil, ErrStopped
	}
	key := req.SubKey
	key.Event = ev.name
	s := e.subShard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.subs[key]
	var ch chan Result
	if withWaiter {
		ch = make(chan Result, 1)
	}
	if r == nil {
		r = &subRec{key: key, shard: s, ev: ev, storedFlag: -1, state: StatePending}
		s.subs[key] = r
	} else if e.claimSub(r); !r.unsub && !r.failed && r.flag == req.Flag && r.target == req.Target && r.expires == req.Expires &&
		r.proxy == req.OutboundProxy && r.ourURI == req.Contact && slices.Equal(r.hdrs, req.ExtraHeaders) {
		if withWaiter {
			if r.confirmed && !r.inFlight && r.sentGen == r.gen {
				ch <- Result{Status: r.lastStatus, Reason: r.lastReason,
					Expires: time.Duration(r.srvExpires-e.clock.Now().Unix()) * time.Second}
			} else {
				r.waiters = append(r.waiters, waiter{gen: r.gen, ch: ch})
			}
		}
		return ch, nil
	}
	if r.unsub && r.unsubSent && !r.inFlight {
		// A failed un-SUBSCRIBE waits for its retry in the old dialog:
		// that dialog is left (the far end's subscription in it ends at
		// its expiry, or with the 481 to its next NOTIFY) and the new
		// subscription is made now, in a new one, as when the owner
		// subscribes again while the un-SUBSCRIBE is in flight.
		e.resetDialog(r)
		e.sched.Cancel(r)
		r.backingOff = false
	}
	r.flag, r.target, r.expires, r.proxy = req.Flag, req.Target, req.Expires, req.OutboundProxy
	r.targetUnknown = false
	r.hdrs = slices.Clone(req.ExtraHeaders)
	r.ourURI = req.Contact
	r.unsub, r.failed = false, false
	r.clearRefusal()
	r.gen++
	if withWaiter {
		r.waiters = append(r.waiters, waiter{gen: r.gen, ch: ch})
	}
	e.markDirty(r, &r.dirty)
	e.kickSub(r)
	return ch, nil
}

func (e *Engine) kickSub(r *subRec) {
	if r.inFlight || r.backingOff {
		return
	}
	e.queue.push(r)
}

// Unsubscribe ends a subscription (in-dialog SUBSCRIBE with Expires: 0).
// Unknown keys are ignored.
func (e *Engine) Unsubscribe(key SubKey) error {
	ev, err := e.ev.get(key.Event)
	if err != nil {
		return err
	}
	key.Event = ev.name
	s := e.subShard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.subs[key]
	if r == nil {
		return nil
	}
	if !r.unsub {
		r.unsub = true
		r.failed = false
		r.clearRefusal()
		r.gen++
	}
	r.unclaimed = false
	if !r.inFlight && (r.callID == "" || r.remoteTag == "") {
		e.dropSub(r, Result{})
		return nil
	}
	// Stored before it is answered: a restart finishes it.
	e.markDirty(r, &r.dirty)
	e.flushSoon()
	r.backingOff = false
	e.queue.push(r)
	return nil
}

// Refresh sends an in-dialog refresh of an established subscription now;
// the notifier answers it with a NOTIFY of its full state (RFC 6665
// §4.2.1.2), which an owner asks for when it missed a notification. Unknown
// keys and subscriptions not established are left alone.
func (e *Engine) Refresh(key SubKey) error {
	ev, err := e.ev.get(key.Event)
	if err != nil {
		return err
	}
	key.Event = ev.name
	s := e.subShard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.subs[key]
	if r == nil || r.unsub || r.failed || !r.confirmed {
		return nil
	}
	r.gen++
	e.markDirty(r, &r.dirty)
	e.kickSub(r)
	return nil
}

// registerDialog indexes r by Call-ID and our tag. Shard locked.
func (e *Engine) registerDialog(r *subRec) {
	e.dmu.Lock()
	e.dialogs[dialogKey{r.callID, r.localTag}] = r
	e.dmu.Unlock()
}

// resetDialog forgets r's dialog; the next SUBSCRIBE is a new initial one.
func (e *Engine) resetDialog(r *subRec) {
	e.forgetDialog(r)
	e.markDirty(r, &r.dirty)
}

// forgetDialog forgets r's dialog in memory only.
func (e *Engine) forgetDialog(r *subRec) {
	if r.callID != "" {
		e.dmu.Lock()
		if e.dialogs[dialogKey{r.callID, r.localTag}] == r {
			delete(e.dialogs, dialogKey{r.callID, r.localTag})
		}
		e.dmu.Unlock()
	}
	r.callID, r.localTag, r.remoteTag, r.remoteTarget = "", "", "", ""
	r.routes, r.confirmed, r.cseq = nil, false, 0
	r.remoteCSeq, r.haveRemoteCSeq = 0, false
	r.unsubSent = false
}

// dropSub deletes r. Shard locked.
func (e *Engine) dropSub(r *subRec, res Result) {
	if r.deleted {
		return
	}
	e.resetDialog(r)
	r.deleted = true
	r.state = StateRemoving
	delete(r.shard.subs, r.key)
	e.sched.Cancel(r)
	for _, f := range r.staleFlags(r.storedFlag, -1) {
		e.markRemoved(Record{PresURI: r.key.PresURI, PresID: r.key.ID, EventName: r.key.Event,
			Flag: f, WatcherURI: r.key.WatcherURI})
	}
	resolveWaiters(&r.waiters, ^uint64(0), res)
}

// nextSubOp decides what r needs now. Shard locked.
func (e *Engine) nextSubOp(r *subRec, now time.Time) subOp {
	if r.deleted || r.inFlight {
		return subOp{}
	}
	op := subOp{gen: r.gen, key: r.key, hdrs: r.hdrs, proxy: r.proxy, contact: e.ContactURI()}
	if r.ourURI != "" {
		op.contact = r.ourURI
	}
	switch {
	case r.unsub:
		if r.callID == "" || r.remoteTag == "" {
			e.dropSub(r, Result{})
			return subOp{}
		}
		op.kind = subUnsub
	case r.failed:
		return subOp{}
	case r.unclaimed && r.callID == "":
		return subOp{} // its owner may not want it any more: wait for the claims
	case r.callID == "":
		r.callID = sip.GenerateTagN(24)
		r.localTag = sip.GenerateTagN(16)
		r.cseq = 0
		r.contact = op.contact
		e.registerDialog(r)
		op.kind = subInitial
	case !r.confirmed:
		// A dialog from NOTIFY only: wait for the initial reply (in flight) –
		// should not happen when not in flight; start over.
		e.resetDialog(r)
		return e.nextSubOp(r, now)
	case r.gen > r.sentGen || now.UnixNano() >= r.nextRefresh:
		op.kind = subRefresh
	default:
		return subOp{}
	}
	r.cseq++
	op.callID, op.localTag, op.remoteTag, op.cseq = r.callID, r.localTag, r.remoteTag, r.cseq
	op.routes = r.routes
	op.ruri = r.target
	if op.ruri == "" {
		op.ruri = r.key.PresURI
	}
	if op.kind != subInitial && r.remoteTarget != "" {
		op.ruri = r.remoteTarget
	}
	exp := r.expires
	if exp <= 0 {
		exp = e.cfg.DefaultExpires
	}
	exp = max(exp, e.cfg.MinExpires, r.minExp, time.Second)
	op.expires = int((exp + time.Second - 1) / time.Second)
	if op.kind == subUnsub {
		op.expires = 0
	}
	return op
}

// runSubscribe sends the SUBSCRIBE r needs, if any, and applies the reply.
func (e *Engine) runSubscribe(r *subRec) {
	s := r.shard
	now := e.clock.Now()
	s.mu.Lock()
	if e.stillBackingOff(r, r.backingOff, now) {
		s.mu.Unlock() // an older queue entry: the retry is scheduled
		return
	}
	r.backingOff = false
	if !e.mayPublish(r.key.PresURI) {
		s.mu.Unlock() // another instance owns its shard (cluster.go)
		return
	}
	e.retryRefusedSub(r, now)
	op := e.nextSubOp(r, now)
	if op.kind == subNone {
		if !r.deleted && !r.inFlight && !r.failed && r.confirmed {
			e.sched.Schedule(r, time.Unix(0, r.nextRefresh))
		}
		s.mu.Unlock()
		return
	}
	r.inFlight = true
	if op.kind == subUnsub {
		r.unsubSent = true
	}
	s.mu.Unlock()

	out := e.sendSubscribe(op)
	res := out.result()

	s.mu.Lock()
	defer s.mu.Unlock()
	r.inFlight = false
	if out.cseq > r.cseq && r.callID == op.callID {
		r.cseq = out.cseq
	}
	e.applySubscribeResult(r, op, out, res)
}

// applySubscribeResult moves r's state on the reply. Shard locked.
func (e *Engine) applySubscribeResult(r *subRec, op subOp, out txOutcome, res Result) {
	if r.deleted {
		return
	}
	now := e.clock.Now()
	r.lastStatus, r.lastReason = res.Status, res.Reason
	if res.Err != nil && res.Status == 0 {
		r.lastReason = res.Err.Error()
	}
	log := e.log.With("aor", op.key.PresURI, "watcher", op.key.WatcherURI, "event", op.key.Event,
		"call_id", op.callID, "op", op.kind.String())
	if e.subServerBound(r) {
		// An un-SUBSCRIBE's reply too: its 503 Retry-After holds off
		// every retry towards the server (its own included).
		e.noteServerResult(res, now)
	}
	if op.kind == subUnsub {
		log.Debug("unsubscribed", "status", res.Status, "err", res.Err)
		if r.unsub && r.gen == op.gen {
			if retryable(res) && r.callID == op.callID && now.Unix() < r.srvExpires {
				// The far end may still hold the subscription (a 5xx, a
				// timeout): the un-SUBSCRIBE is tried again on the
				// backoff, until the subscription would have expired.
				log.Warn("un-SUBSCRIBE failed, retrying", "status", res.Status, "err", res.Err)
				e.retrySub(r, res, op.gen, now, log)
				return
			}
			e.dropSub(r, res)
			return
		}
		e.resetDialog(r) // subscribed again meanwhile
		e.queue.push(r)
		return
	}
	if r.callID != op.callID {
		return // dialog replaced meanwhile (terminated NOTIFY, reset)
	}
	switch {
	case res.Status >= 200 && res.Status < 300:
		granted := time.Duration(op.expires) * time.Second
		if h := out.res.GetHeader("Expires"); h != nil {
			granted = res.Expires
		}
		if granted <= 0 {
			log.Warn("subscription accepted with Expires: 0, subscribing anew")
			e.resetDialog(r)
			e.retrySub(r, res, op.gen, now, log)
			return
		}
		if op.kind == subInitial {
			if r.remoteTag == "" {
				if to := out.res.To(); to != nil {
					r.remoteTag, _ = to.Params.Get("tag")
				}
			}
			if r.routes == nil {
				rr := out.res.GetHeaders("Record-Route")
				for i := len(rr) - 1; i >= 0; i-- {
					r.routes = append(r.routes, "<"+routeURI(rr[i])+">")
				}
			}
		}
		if c := out.res.Contact(); c != nil && (r.remoteTarget == "" || op.kind == subRefresh) {
			r.remoteTarget = c.Address.String()
		}
		r.confirmed = true
		r.sentGen = op.gen
		r.srvExpires = now.Add(granted).Unix()
		r.nextRefresh = refreshAt(now, granted).UnixNano()
		r.attempt, r.state = 0, StateActive
		r.clearRefusal()
		r.version++
		e.markDirty(r, &r.dirty)
		resolveWaiters(&r.waiters, op.gen, res)
		if r.unsub || r.gen > r.sentGen {
			e.queue.push(r)
			return
		}
		e.sched.Schedule(r, time.Unix(0, r.nextRefresh))
	case res.Status == 423 && res.Expires > time.Duration(op.expires)*time.Second:
		r.minExp = res.Expires
		log.Info("interval too brief, retrying with Min-Expires", "min_expires", res.Expires)
		if op.kind == subInitial {
			e.resetDialog(r)
		}
		e.queue.push(r)
	case op.kind == subInitial && !retryable(res) && res.Status != 481:
		log.Warn("subscribe refused", "status", res.Status, "reason", res.Reason)
		e.resetDialog(r)
		switch {
		case r.unsub: // unsubscribed meanwhile: the far end holds nothing
			e.m.Refused("SUBSCRIBE", r.key.Event, res.Status)
			resolveWaiters(&r.waiters, op.gen, res)
			e.dropSub(r, res)
		case r.gen > op.gen: // changed meanwhile: that state is not refused
			e.m.Refused("SUBSCRIBE", r.key.Event, res.Status)
			resolveWaiters(&r.waiters, op.gen, res)
			e.queue.push(r)
		default:
			e.refuseSub(r, res.Status, now, log)
			resolveWaiters(&r.waiters, op.gen, res)
		}
	case r.unsub && op.kind == subRefresh && res.Status != 481:
		// Unsubscribed while a refresh was in flight, which failed: the
		// far end keeps the subscription (RFC 6665 §4.1.2.2), so the
		// un-SUBSCRIBE goes in its dialog.
		log.Warn("refresh failed, unsubscribing in its dialog", "status", res.Status, "err", res.Err)
		e.queue.push(r)
	default:
		// Timeout, 408, 481, 5xx, or any failure of an in-dialog refresh:
		// the dialog is gone; start a new one after a backoff.
		log.Warn("subscription lost, subscribing anew", "status", res.Status, "err", res.Err)
		e.resetDialog(r)
		e.retrySub(r, res, op.gen, now, log)
	}
}

// retrySub arms a backoff before the next initial SUBSCRIBE.
func (e *Engine) retrySub(r *subRec, res Result, gen uint64, now time.Time, log interface {
	Debug(string, ...any)
}) {
	r.attempt++
	d := e.backoff(int(r.attempt))
	if e.subServerBound(r) {
		d = e.holdOff(now, d)
	}
	r.state, r.backingOff = StateRetrying, true
	resolveWaiters(&r.waiters, gen, res)
	log.Debug("subscribe retry scheduled", "retry_in", d)
	e.sched.Schedule(r, now.Add(d))
}

// SubscriptionStates counts the subscriptions by event package and
// state, copying none of them (what a metrics scrape reads).
func (e *Engine) SubscriptionStates() []StateCount {
	counts := map[[2]string]int{}
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.Lock()
		for _, r := range s.subs {
			counts[[2]string{r.key.Event, r.state}]++
		}
		s.mu.Unlock()
	}
	return stateCounts(counts)
}

// Subscriptions returns a snapshot of every subscription.
func (e *Engine) Subscriptions() []SubscriptionInfo {
	var out []SubscriptionInfo
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.Lock()
		for _, r := range s.subs {
			out = append(out, r.info())
		}
		s.mu.Unlock()
	}
	return out
}

// Subscription returns a snapshot of one subscription.
func (e *Engine) Subscription(key SubKey) (SubscriptionInfo, bool) {
	key.Event = e.ev.canon(key.Event)
	s := e.subShard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.subs[key]
	if r == nil {
		return SubscriptionInfo{}, false
	}
	return r.info(), true
}

func (r *subRec) info() SubscriptionInfo {
	si := SubscriptionInfo{Key: r.key, Flag: r.flag, Target: r.target, State: r.state, LastStatus: r.lastStatus,
		LastReason: r.lastReason, CallID: r.callID, LocalTag: r.localTag, RemoteTag: r.remoteTag,
		LastNotifyCT: r.lastCT, LastNotifyDoc: bytes.Clone(r.lastDoc)}
	if r.srvExpires != 0 {
		si.Expires = time.Unix(r.srvExpires, 0)
	}
	if r.lastNotify != 0 {
		si.LastNotify = time.Unix(r.lastNotify, 0)
	}
	if r.failed && r.retryAt != 0 {
		si.NextRetry = time.Unix(0, r.retryAt)
	}
	si.Refusals = int(r.refusals)
	return si
}
