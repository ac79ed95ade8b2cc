package pua

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/dialogdoc"
)

// pubRec is one publication: the desired state given by its owner and the
// state accepted by the server. Guarded by its shard's mutex.
//
// A process holds one per publication, 100,000 and more (see
// TestPubRecSize): each part gives its words first and its small fields at
// the end, where they pack without padding, and what few publications
// have is in rare.
type pubRec struct {
	task
	key   Key
	shard *shard
	ev    *eventInfo
	rare  *pubRare // nil until needed

	// desired state
	body    []byte
	ctype   string
	expires time.Duration
	endAt   int64 // Unix seconds the lifetime ends; 0 = until removed
	gen     uint64

	// server state
	etag       string
	srvExpires int64 // Unix seconds the server's copy expires
	sentGen    uint64
	// ackBody is the document the server accepted last, under ackETag (a
	// refresh carries the ETag over); unknown when ackETag is not etag.
	// A later generation may carry that very document (a refresh asked
	// for, a removal called off): see serverHolds.
	ackBody []byte
	ackETag string
	// okReason and okStatus are the 2xx that last accepted the publication
	// (0 when none has in this run): what a waiter for a state the server
	// holds already is told.
	okReason string

	// control
	nextRefresh int64 // Unix nanoseconds, so refreshes keep their spread
	lastReason  string

	// The small fields of the parts above. Owner flags fit in 32 bits (see
	// publish), and sipgo reads a status code into 16.

	flag        int32 // desired state
	version     int32 // server state
	attempt     int32
	storedFlag  int32  // flag of the stored row, -1 if none
	countedFlag int32  // the owner flag r is counted under (max_publications)
	okStatus    uint16 // with okReason
	lastStatus  uint16 // with lastReason
	state       pubState

	// desired state
	remove bool
	// bodyTerminated: body is a dialog document whose dialogs are all
	// terminated (dialogdoc.AllTerminated, worked out once per body).
	bodyTerminated bool

	// server state
	// srvTerminated: the server holds a dialog document with only
	// terminated dialogs, which Kamailio never updates (dialogdoc.AllTerminated).
	srvTerminated bool

	// control
	inFlight     bool
	failed       bool
	backingOff   bool
	forceInitial bool
	forceRefresh bool // an explicit refresh was asked for (IfMatch, same state)
	deleted      bool
	dirty        bool
	// unclaimed: loaded from the store and not yet claimed by its owner
	// (see Claim); one the server never accepted is held until claimed.
	unclaimed bool
	// durable: an ETag of this publication has been written to the store,
	// so the full Expires may be asked (see Config.InitialExpires).
	durable bool
	// sweepRemove: swept while showing a dialog; removed once its
	// terminated document is accepted (see Engine.endDialogs).
	sweepRemove bool
	// lapse: the publication's lifetime is bounded and its document is a
	// dialog document whose dialogs are all terminated: it is not
	// refreshed, and at the end of its lifetime it is dropped without a
	// removal once the server holds that document (see lapses).
	lapse bool
}

// pubRare is what few publications have, out of pubRec so that the others
// pay only for its pointer: extra headers or an outbound proxy of their
// own (BLA's Sender, the management API), waiters (PublishWait,
// RemoveWait), refusals, a Min-Expires raised by a 423. A record gets its
// own on first use (more) and keeps it. Guarded by the shard's mutex.
type pubRare struct {
	// desired state
	hdrs  []Header
	proxy string

	// server state
	minExp time.Duration

	// control
	waiters []waiter
	retryAt int64 // Unix nanoseconds a refused record is tried again; 0 = none
	// refusedGen is the newest generation whose document the server
	// refused outright (refusePub, refusedAheadOfRemoval).
	refusedGen uint64
	refusals   int32 // refusals in a row (refused.go)
}

// more returns r's rare part, allocated on first use. Shard locked.
func (r *pubRec) more() *pubRare {
	if r.rare == nil {
		r.rare = new(pubRare)
	}
	return r.rare
}

// hdrs, proxy, minExp and refusedGen read r's rare part, zero when r has
// none. Shard locked.

func (r *pubRec) hdrs() []Header {
	if r.rare == nil {
		return nil
	}
	return r.rare.hdrs
}

func (r *pubRec) proxy() string {
	if r.rare == nil {
		return ""
	}
	return r.rare.proxy
}

func (r *pubRec) minExp() time.Duration {
	if r.rare == nil {
		return 0
	}
	return r.rare.minExp
}

func (r *pubRec) refusedGen() uint64 {
	if r.rare == nil {
		return 0
	}
	return r.rare.refusedGen
}

// flagFits reports whether a publication's owner flag fits the 32 bits a
// record keeps of it (pubRec.flag, Kamailio's INT column).
func flagFits(flag int) bool { return int(int32(flag)) == flag }

// setRoute gives r its extra headers and outbound proxy. Shard locked.
func (r *pubRec) setRoute(hdrs []Header, proxy string) {
	if r.rare == nil && hdrs == nil && proxy == "" {
		return
	}
	x := r.more()
	x.hdrs, x.proxy = hdrs, proxy
}

// docRefused counts r's document of generation gen among the refused
// (refusedGen). Shard locked.
func (r *pubRec) docRefused(gen uint64) {
	x := r.more()
	x.refusedGen = max(x.refusedGen, gen)
}

// await registers ch as a waiter for r's current generation. Shard locked.
func (r *pubRec) await(ch chan Result) {
	x := r.more()
	x.waiters = append(x.waiters, waiter{gen: r.gen, ch: ch})
}

// resolve hands res to r's waiters for a generation up to gen
// (resolveWaiters). Shard locked.
func (r *pubRec) resolve(gen uint64, res Result) {
	if r.rare != nil {
		resolveWaiters(&r.rare.waiters, gen, res)
	}
}

func (r *pubRec) base() *task { return &r.task }

// pubKind is the RFC 3903 operation of a PUBLISH.
type pubKind uint8

const (
	pubNone pubKind = iota
	pubInitial
	pubRefresh
	pubModify
	pubRemove
)

func (k pubKind) String() string {
	return [...]string{"none", "initial", "refresh", "modify", "remove"}[k]
}

// pubState is the state of a publication, shown as StatePending...
type pubState uint8

const (
	pubPending pubState = iota
	pubActive
	pubRetrying
	pubFailed
	pubRemoving
)

func (s pubState) String() string {
	return [...]string{StatePending, StateActive, StateRetrying, StateFailed, StateRemoving}[s]
}

// pubOp is a snapshot of what one PUBLISH carries.
type pubOp struct {
	kind    pubKind
	gen     uint64
	presURI string
	event   string
	etag    string
	body    []byte
	ctype   string
	expires int // seconds
	hdrs    []Header
	proxy   string
	replace bool // a removal that makes way for a new initial PUBLISH
	// terminated: body is a dialog document with only terminated dialogs.
	terminated bool
}

// validateKey checks a publication key and returns its event.
func (e *Engine) validateKey(k Key) (*eventInfo, error) {
	ev, err := e.ev.get(k.Event)
	if err != nil {
		return nil, err
	}
	if err := checkURI(k.PresURI); err != nil {
		return nil, fmt.Errorf("pua: presentity %q: %w", k.PresURI, err)
	}
	return ev, nil
}

// checkURI accepts a sip: or sips: URI with a host.
func checkURI(s string) error {
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		return fmt.Errorf("invalid SIP URI: %w", err)
	}
	if (u.Scheme != "sip" && u.Scheme != "sips") || u.Host == "" {
		return errors.New("invalid SIP URI: want sip:user@host")
	}
	return nil
}

// checkHeaders refuses extra headers that would break the request: names
// that are not a token, line breaks, and the headers the engine sets itself
// (ReservedHeader).
func checkHeaders(hs []Header) error {
	for _, h := range hs {
		if h.Name == "" || bytes.ContainsAny([]byte(h.Name+h.Value), "\r\n\x00") || bytes.ContainsAny([]byte(h.Name), ": \t") {
			return fmt.Errorf("pua: extra header %q: invalid", h.Name)
		}
		if canon, ok := ReservedHeader(h.Name); ok {
			return fmt.Errorf("%w: %s (%q) is set by the engine", ErrReservedHeader, canon, h.Name)
		}
	}
	return nil
}

// Publish sets the desired state of a publication. It returns at once; the
// engine sends the PUBLISH (coalescing changes while one is in flight). An
// error means the request itself was refused: unknown event
// (ErrUnknownEvent), bad presentity URI, empty body, a flag beyond 32 bits,
// or an IfMatch that is not the current ETag (ErrWrongETag).
func (e *Engine) Publish(req PublishRequest) error {
	_, err := e.publish(req, false)
	return err
}

// PublishWait is Publish, then waits for the final reply of the transaction
// that carried this state (or a later one that superseded it). A state the
// server has accepted already is answered at once with that acceptance,
// whatever a refresh of it meets since.
func (e *Engine) PublishWait(ctx context.Context, req PublishRequest) (Result, error) {
	ch, err := e.publish(req, true)
	if err != nil {
		return Result{}, err
	}
	return wait(ctx, ch)
}

func (e *Engine) publish(req PublishRequest, withWaiter bool) (chan Result, error) {
	ev, err := e.validateKey(req.Key)
	if err != nil {
		e.log.Warn("publish refused", "aor", req.PresURI, "event", req.Event, "err", err)
		return nil, err
	}
	if len(req.Body) == 0 {
		e.log.Warn("publish refused: empty body", "aor", req.PresURI, "event", req.Event)
		return nil, fmt.Errorf("pua: publish %s %s: empty body", req.PresURI, req.Event)
	}
	if err := checkHeaders(req.ExtraHeaders); err != nil {
		e.log.Warn("publish refused", "aor", req.PresURI, "event", req.Event, "err", err)
		return nil, err
	}
	if req.Expires < 0 || req.Lifetime < 0 {
		return nil, fmt.Errorf("pua: publish %s %s: negative expires or lifetime", req.PresURI, req.Event)
	}
	if !flagFits(req.Flag) {
		// A record keeps 32 bits of it (pubRec.flag), as the store does.
		return nil, fmt.Errorf("pua: publish %s %s: flag %d out of range", req.PresURI, req.Event, req.Flag)
	}
	if !e.enter() {
		return nil, ErrStopped
	}
	defer e.callers.Done()
	key := req.Key
	key.Event = ev.name
	s := e.pubShard(key)
	ch, run, err := func() (chan Result, *pubRec, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return e.publishLocked(s, key, ev, req, withWaiter)
	}()
	if run != nil {
		e.runPublish(run, e.releaseSlot)
	}
	return ch, err
}

// publishLocked applies req to its record; run is the record when the
// caller is to send its PUBLISH itself (kickPubHere). Shard locked.
func (e *Engine) publishLocked(s *shard, key Key, ev *eventInfo, req PublishRequest, withWaiter bool) (ch chan Result, run *pubRec, err error) {
	now := e.clock.Now()
	r := s.pubs[key]
	keepEnd := false
	if req.IfMatch != "" && (r == nil || r.etag != req.IfMatch) {
		return nil, nil, fmt.Errorf("%w: %q", ErrWrongETag, req.IfMatch)
	}
	if r == nil {
		if !e.owned.take(req.Flag, e.cfg.MaxPublications, false) {
			e.m.Tracker("pua", "publication_cap")
			if e.owned.logDue(now) {
				e.log.Warn("publish refused: owner holds max_publications", "aor", req.PresURI, "event", req.Event,
					"flag", req.Flag, "max_publications", e.cfg.MaxPublications)
			}
			return nil, nil, fmt.Errorf("%w: %d held", ErrTooManyPublications, e.cfg.MaxPublications)
		}
		r = &pubRec{key: key, shard: s, ev: ev, storedFlag: -1, state: pubPending, countedFlag: int32(req.Flag)}
		s.pubs[key] = r
	} else if e.claimPub(r); r.lapse && req.Lifetime > 0 && r.sameDoc(req) {
		// The same terminated dialog document again: it keeps the end of
		// its lifetime, and its Expires (bounded by that end), or an owner
		// repeating it would keep it at the server for good. Nothing more
		// to send, unless it was refused (tried again now) or its ETag
		// named (a refresh asked for, below).
		keepEnd = true
		if !r.failed && req.IfMatch == "" {
			return r.addWaiter(withWaiter, now), nil, nil
		}
	} else if !r.remove && !r.failed && r.sameDoc(req) && r.expires == req.Expires &&
		req.Lifetime == 0 && r.endAt == 0 {
		if req.IfMatch == "" || r.sentGen != r.gen {
			// Same state again (or that state is still to be sent):
			// nothing more to send.
			return r.addWaiter(withWaiter, now), nil, nil
		}
		// A caller naming the ETag without a change asks for a refresh
		// now (pua_mi / pua.publish with an etag and no new body).
		r.gen++
		r.forceRefresh = true
		ch = r.addWaiter(withWaiter, now)
		return ch, e.kickPubHere(r), nil
	}
	r.flag = int32(req.Flag)
	r.setDoc(bytes.Clone(req.Body))
	r.ctype = req.ContentType
	r.setRoute(slices.Clone(req.ExtraHeaders), req.OutboundProxy)
	if !keepEnd {
		r.expires = req.Expires
		r.endAt = 0
		if req.Lifetime > 0 {
			r.endAt = now.Add(req.Lifetime).Unix()
		}
	}
	r.lapse = r.endAt != 0 && r.bodyTerminated && !ev.bodyAlways
	r.remove, r.sweepRemove = false, false
	r.failed = false
	// A refresh asked for before is carried by the new state's PUBLISH:
	// left standing, it would go as a refresh (no document) and count
	// the new state as sent.
	r.forceRefresh = false
	r.clearRefusal()
	r.gen++
	e.markDirty(r, &r.dirty)
	ch = r.addWaiter(withWaiter, now)
	return ch, e.kickPubHere(r), nil
}

// sameDoc reports whether req gives r's current document, with the same
// owner, content type, headers and proxy. Shard locked.
func (r *pubRec) sameDoc(req PublishRequest) bool {
	return !r.remove && int(r.flag) == req.Flag && bytes.Equal(r.body, req.Body) && r.ctype == req.ContentType &&
		r.proxy() == req.OutboundProxy && slices.Equal(r.hdrs(), req.ExtraHeaders)
}

// addWaiter registers a waiter for the current generation; if the server
// has accepted that generation already (in this run: a publication loaded
// from the store waits for the outcome of its first PUBLISH) it is
// answered at once with that acceptance, even while a refresh of it is in
// flight or waits for its retry: the outcome of that refresh is not the
// waiter's. An acceptance whose lease has run out at the server is not
// one: the waiter waits for the next outcome.
func (r *pubRec) addWaiter(want bool, now time.Time) chan Result {
	if !want {
		return nil
	}
	ch := make(chan Result, 1)
	if r.sentGen == r.gen && r.etag != "" && r.okStatus != 0 && !r.remove && !r.forceInitial && r.srvExpires > now.Unix() {
		ch <- Result{Status: int(r.okStatus), Reason: r.okReason, ETag: r.etag,
			Expires: time.Duration(r.srvExpires-now.Unix()) * time.Second}
		return ch
	}
	r.await(ch)
	return ch
}

// kickPub queues r for its worker unless a request is in flight or it is
// waiting out a backoff. Called with the shard locked.
func (e *Engine) kickPub(r *pubRec) {
	if r.inFlight || r.backingOff {
		return
	}
	e.queue.push(r)
}

// kickPubHere is kickPub for a caller that can send r's PUBLISH itself:
// when the engine runs, the next hop needs no lookup (sendsInline) and a
// transaction slot is free, it takes the slot and returns r, which the caller runs with
// runPublish once the shard is unlocked, sparing the hand-off to a
// worker; otherwise it queues r and returns nil. The caller must be
// counted in e.callers (enter). Shard locked.
func (e *Engine) kickPubHere(r *pubRec) *pubRec {
	if r.inFlight || r.backingOff {
		return nil
	}
	if e.sendsInline && r.proxy() == "" && e.running.Load() {
		select {
		case e.slots <- struct{}{}:
			return r
		default:
		}
	}
	e.queue.push(r)
	return nil
}

// Remove withdraws a publication (PUBLISH Expires: 0 with its ETag). A
// publication the server never accepted is dropped without sending
// anything. Removing an unknown key is not an error.
func (e *Engine) Remove(key Key) error {
	_, err := e.remove(key, false)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// RemoveWait is Remove, then waits for the final reply of the removal.
// It returns ErrNotFound for an unknown key and a zero Result when nothing
// had to be sent.
func (e *Engine) RemoveWait(ctx context.Context, key Key) (Result, error) {
	ch, err := e.remove(key, true)
	if err != nil {
		return Result{}, err
	}
	return wait(ctx, ch)
}

func (e *Engine) remove(key Key, withWaiter bool) (chan Result, error) {
	ev, err := e.ev.get(key.Event)
	if err != nil {
		return nil, err
	}
	key.Event = ev.name
	here := e.enter()
	if here {
		defer e.callers.Done()
	}
	s := e.pubShard(key)
	ch, run, err := func() (chan Result, *pubRec, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return e.removeLocked(s, key, withWaiter, here)
	}()
	if run != nil {
		e.runPublish(run, e.releaseSlot)
	}
	return ch, err
}

// removeLocked marks key's record for removal; run is the record when the
// caller is to send the removal itself (here: the caller is counted in
// e.callers). Shard locked.
func (e *Engine) removeLocked(s *shard, key Key, withWaiter, here bool) (ch chan Result, run *pubRec, err error) {
	r := s.pubs[key]
	if r == nil {
		return nil, nil, fmt.Errorf("%w: %s %s %s", ErrNotFound, key.PresURI, key.Event, key.ID)
	}
	if withWaiter {
		ch = make(chan Result, 1)
	}
	if !r.remove {
		r.remove = true
		r.failed, r.forceRefresh = false, false
		r.clearRefusal()
		r.gen++
	}
	r.unclaimed = false
	if withWaiter {
		r.await(ch)
	}
	if r.etag == "" && !r.inFlight {
		e.dropPub(r, Result{})
		return ch, nil, nil
	}
	// The intent is stored before the removal is answered: a restart
	// finishes it instead of refreshing the publication.
	e.markDirty(r, &r.dirty)
	e.flushSoon()
	if !here {
		e.kickPub(r)
		return ch, nil, nil
	}
	return ch, e.kickPubHere(r), nil
}

// dropPub deletes r from the table and the store. Shard locked.
func (e *Engine) dropPub(r *pubRec, res Result) {
	if r.deleted {
		return
	}
	r.deleted = true
	r.state = pubRemoving
	delete(r.shard.pubs, r.key)
	e.owned.release(int(r.countedFlag))
	e.sched.Cancel(r)
	// The stored row, and the one appended to the journal even if the
	// database never got it.
	for _, f := range r.staleFlags(int(r.storedFlag), -1) {
		e.markRemoved(Record{PresURI: r.key.PresURI, PresID: r.key.ID, EventName: r.key.Event, Flag: f})
	}
	r.resolve(^uint64(0), res)
}

// nextPubOp decides what r needs now. Shard locked.
func (e *Engine) nextPubOp(r *pubRec, now time.Time) pubOp {
	if r.deleted || r.inFlight {
		return pubOp{}
	}
	if !r.remove && r.endAt != 0 && now.Unix() >= r.endAt {
		switch {
		case !r.lapse:
			r.remove = true
			r.gen++
		case r.etag == "" || r.srvTerminated && r.sentGen == r.gen && !r.forceInitial:
			// The server holds the terminated document (or nothing):
			// its copy lapses by itself, there is nothing to remove.
			e.m.Tracker("pua", "lapsed_publication")
			e.dropPub(r, Result{})
			return pubOp{}
		case r.refusedGen() >= r.gen:
			// The server refused the terminated document: the one it
			// holds instead (a lit one) is removed.
			r.remove = true
			r.gen++
		}
		// Otherwise the terminated document has still to reach the
		// server: it is sent below, and the record dropped once accepted.
	}
	op := pubOp{gen: r.gen, presURI: r.key.PresURI, event: r.key.Event, hdrs: r.hdrs(), proxy: r.proxy()}
	ahead := false
	switch {
	case r.remove && r.etag != "" && r.bodyPending() && !r.serverHolds() && r.gen-1 > r.refusedGen() && !r.srvTerminated:
		// The document given last before the removal (usrloc's closed,
		// say) never reached the server: it goes first, the removal once
		// it is accepted. A server may answer a removal 200 and then fail
		// to delete the row (Kamailio's presence replies before its
		// delete, which a locked database fails): the row it keeps must
		// show that last document, not an older one, lit, until it
		// expires. (Not for a document the server refused already, nor
		// for a terminated dialog document at the server, which Kamailio
		// never updates.)
		op.kind, op.etag, op.gen = pubModify, r.etag, r.gen-1
		ahead = true
	case r.remove:
		if r.etag == "" {
			e.dropPub(r, Result{})
			return pubOp{}
		}
		return r.removalOp(op, false)
	case r.failed:
		return pubOp{}
	case r.unclaimed && r.etag == "":
		return pubOp{} // its owner may not want it any more: wait for the claims
	case r.etag == "" || r.forceInitial:
		op.kind = pubInitial
		r.durable = false // a new publication: its ETag is not stored yet
	case r.lapse && r.srvTerminated && r.gen == r.sentGen && !r.forceRefresh:
		// Left to lapse at the server at the end of its lifetime: no
		// refresh, no replacement.
		return pubOp{}
	case r.srvTerminated && (r.forceRefresh || r.gen > r.sentGen || now.UnixNano() >= r.nextRefresh || r.nextRefresh == 0):
		// Replace, do not update, a terminated dialog document: remove it
		// now, publish the current state anew after the reply.
		r.forceRefresh = false
		return r.removalOp(op, true)
	case r.forceRefresh:
		r.forceRefresh = false
		op.kind, op.etag = pubRefresh, r.etag
	case r.gen > r.sentGen:
		op.kind, op.etag = pubModify, r.etag
	case now.UnixNano() >= r.nextRefresh || r.nextRefresh == 0:
		op.kind, op.etag = pubRefresh, r.etag
	default:
		return pubOp{}
	}
	if op.kind != pubRefresh || r.ev.bodyAlways {
		r.setBody(&op)
	}
	exp := r.expires
	if exp <= 0 {
		exp = e.cfg.DefaultExpires
	}
	if r.endAt != 0 {
		exp = min(exp, time.Duration(r.endAt-now.Unix())*time.Second)
	}
	if e.store != nil && !r.durable {
		// Short lease until an ETag is stored (see Config.InitialExpires).
		exp = min(exp, e.cfg.InitialExpires)
	}
	if ahead {
		exp = min(exp, aheadExpires)
	}
	exp = max(exp, e.cfg.MinExpires, r.minExp(), time.Second)
	op.expires = int((exp + time.Second - 1) / time.Second)
	return op
}

// serverHolds reports whether the server's copy under r's ETag is known
// to carry r's document. Shard locked.
func (r *pubRec) serverHolds() bool {
	return r.ackETag != "" && r.ackETag == r.etag && bytes.Equal(r.ackBody, r.body)
}

// aheadExpires caps the Expires of the document sent ahead of a removal
// (see nextPubOp). The removal follows at once, so the server's copy of
// that document is meant to live for moments; if the engine loses track of
// it (its 2xx lost and the retry answered 412, the new ETag unknown; a
// server that answers the removal and fails to delete the row), the copy
// lapses within this time instead of the publication's full Expires.
const aheadExpires = 30 * time.Second

// bodyPending reports whether the server has not accepted r's document:
// a change since the last one it accepted, not counting the removal
// itself (which counts one generation). Shard locked.
func (r *pubRec) bodyPending() bool {
	if r.remove {
		return r.gen-1 > r.sentGen
	}
	return r.gen > r.sentGen
}

// removalOp makes op the removal (Expires: 0) of r's publication; replace
// marks one that makes way for a new initial PUBLISH. For a dialog;sla
// publication it carries the document (see eventInfo.bodyAlways).
func (r *pubRec) removalOp(op pubOp, replace bool) pubOp {
	op.kind, op.etag, op.replace = pubRemove, r.etag, replace
	if r.ev.bodyAlways && len(r.body) > 0 {
		r.setBody(&op)
	}
	return op
}

// setDoc makes body r's document. Shard locked.
func (r *pubRec) setDoc(body []byte) {
	r.body = body
	r.bodyTerminated = r.ev.dialog && dialogdoc.AllTerminated(body)
}

// setBody puts r's current document, with its content type, on op.
func (r *pubRec) setBody(op *pubOp) {
	op.body, op.ctype, op.terminated = r.body, r.ctype, r.bodyTerminated
	if op.ctype == "" {
		op.ctype = r.ev.contentType
	}
}

// runPublish sends the PUBLISH r needs, if any, and calls release; once
// one is sent, the reply is applied and release called where its
// transaction ends (sipStack.sendAsync).
func (e *Engine) runPublish(r *pubRec, release func()) {
	op, ok := e.takePubOp(r)
	if !ok {
		release()
		return
	}
	e.inflight.Add(1)
	e.sendPublish(op, func(res Result) {
		// Deferred, so that a panic of OnPublishResult (recovered by a
		// caller that sent itself, e.g. ingest) leaves the record out
		// of flight, the slot given back and Stop able to finish.
		defer e.inflight.Done()
		defer release()
		defer e.finishPub(r, op, res)
		if e.onPub != nil {
			e.onPub(r.key, op.kind.String(), res)
		}
	})
}

// takePubOp decides what r needs now and marks it in flight; ok is false
// when there is nothing to send.
func (e *Engine) takePubOp(r *pubRec) (op pubOp, ok bool) {
	s := r.shard
	now := e.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.stillBackingOff(r, r.backingOff, now) {
		return pubOp{}, false
	}
	r.backingOff = false
	if !e.mayPublish(r.key.PresURI) {
		return pubOp{}, false // another instance owns its shard (cluster.go)
	}
	e.retryRefusedPub(r, now)
	op = e.nextPubOp(r, now)
	if op.kind == pubNone {
		if !r.deleted && !r.inFlight && !r.failed && !r.backingOff && r.etag != "" {
			e.schedulePubRefresh(r)
		}
		return pubOp{}, false
	}
	r.inFlight = true
	if op.kind == pubRemove {
		r.state = pubRemoving
	}
	return op, true
}

// finishPub applies the outcome of r's PUBLISH op.
func (e *Engine) finishPub(r *pubRec, op pubOp, res Result) {
	r.shard.mu.Lock()
	defer r.shard.mu.Unlock()
	r.inFlight = false
	e.applyPublishResult(r, op, res)
}

// stillBackingOff reports whether t, backing off (backingOff), is still
// scheduled for its retry after now: a queue entry older than the
// backoff (pushed twice while a worker waited for a slot) must not cut
// it short. Shard locked.
func (e *Engine) stillBackingOff(t tasker, backingOff bool, now time.Time) bool {
	if !backingOff {
		return false
	}
	at, ok := e.sched.Due(t)
	return ok && at.After(now)
}

// applyPublishResult moves r's state machine on the reply. Shard locked.
func (e *Engine) applyPublishResult(r *pubRec, op pubOp, res Result) {
	now := e.clock.Now()
	r.lastStatus, r.lastReason = uint16(res.Status), res.Reason
	if res.Err != nil && res.Status == 0 {
		r.lastReason = res.Err.Error()
	}
	// The record's logger is built only for a line that is logged (a
	// result is logged at debug level only, unless it fails).
	var lazyLog *slog.Logger
	log := func() *slog.Logger {
		if lazyLog == nil {
			lazyLog = withLazy(e.log, slog.String("aor", op.presURI), slog.String("event", op.event), slog.String("id", r.key.ID), slog.String("op", op.kind.String()))
		}
		return lazyLog
	}
	debug := e.log.Enabled(context.Background(), slog.LevelDebug)
	if e.pubServerBound(r) {
		e.noteServerResult(res, now)
	}
	switch {
	case res.Status >= 200 && res.Status < 300:
		if op.kind == pubRemove {
			if debug {
				log().Debug("publication removed", "status", res.Status, "replaced", op.replace)
			}
			r.etag, r.srvTerminated = "", false
			if r.remove && r.gen == op.gen {
				e.dropPub(r, res)
				return
			}
			break // changed again since: publish anew
		}
		if res.ETag == "" {
			err := fmt.Errorf("pua: %d reply to PUBLISH without SIP-ETag", res.Status)
			log().Error("publish failed", "status", res.Status, "err", err)
			res.Err = err
			r.lastReason = "2xx without SIP-ETag"
			if e.refusedAheadOfRemoval(r, op, res, log) {
				return
			}
			e.refusePub(r, op.gen, res.Status, now, log())
			r.resolve(op.gen, res)
			return
		}
		granted := res.Expires
		if granted <= 0 {
			granted = time.Duration(op.expires) * time.Second
		}
		r.etag = res.ETag
		r.okStatus, r.okReason = uint16(res.Status), res.Reason
		r.srvExpires = now.Add(granted).Unix()
		r.nextRefresh = refreshAt(now, granted).UnixNano()
		if op.kind != pubRefresh {
			r.sentGen = op.gen
			r.version++
			r.srvTerminated = op.terminated
			r.ackBody, r.ackETag = op.body, res.ETag
		} else {
			if op.gen > r.sentGen {
				// A forced refresh carried the unchanged state of op.gen.
				r.sentGen = op.gen
			}
			switch {
			case op.body != nil: // a refresh that carries the document (dialog;sla)
				r.ackBody, r.ackETag = op.body, res.ETag
			case r.ackETag == op.etag:
				r.ackETag = res.ETag // the same document, a new ETag
			}
		}
		r.forceInitial, r.attempt, r.state = false, 0, pubActive
		r.clearRefusal()
		e.markDirty(r, &r.dirty)
		// The server's row now carries this ETag only: losing it in a
		// crash would leave that row orphaned until it expires.
		e.flushSoon()
		if debug {
			log().Debug("publish accepted", "etag", r.etag, "expires", granted)
		}
		r.resolve(op.gen, res)
		e.sweepDone(r)
	case res.Status == 412:
		if ahead := r.remove && op.kind == pubModify; op.kind == pubRemove || ahead {
			// A removal, or the document sent ahead of one (see
			// nextPubOp), found the publication gone: so is what the
			// removal would remove.
			if debug {
				log().Debug("publication already gone at the server", "status", res.Status, "etag", op.etag)
			}
			r.etag, r.srvTerminated = "", false
			if ahead || r.remove && r.gen == op.gen {
				e.dropPub(r, res)
				return
			}
			break
		}
		if op.kind == pubInitial {
			log().Warn("publish failed: 412 to an initial PUBLISH", "status", res.Status)
			e.refusePub(r, op.gen, res.Status, now, log())
			r.resolve(op.gen, res)
			return
		}
		log().Info("publication unknown at the server, publishing anew", "etag", op.etag)
		r.etag, r.forceInitial, r.srvTerminated = "", true, false
		e.markDirty(r, &r.dirty)
	case res.Status == 423 && op.kind != pubRemove:
		// (A removal asks for no interval to raise: a 423 to it is a
		// refusal, handled below.)
		if res.Expires > time.Duration(op.expires)*time.Second {
			r.more().minExp = res.Expires
			log().Info("interval too brief, retrying with Min-Expires", "min_expires", res.Expires)
			break
		}
		log().Warn("publish failed: 423 without a usable Min-Expires", "status", res.Status)
		if e.refusedAheadOfRemoval(r, op, res, log) {
			return
		}
		e.refusePub(r, op.gen, res.Status, now, log())
		r.resolve(op.gen, res)
		return
	case retryable(res):
		r.attempt++
		d := e.backoff(int(r.attempt))
		if e.pubServerBound(r) {
			d = e.holdOff(now, d)
		}
		r.state, r.backingOff = pubRetrying, true
		log().Warn("publish failed, retrying", "status", res.Status, "err", res.Err, "retry_in", d)
		r.resolve(op.gen, res)
		e.sched.Schedule(r, now.Add(d))
		return
	case op.replace:
		// The old document could not be removed: publish the current
		// state anew all the same (the old one expires at the server).
		log().Warn("removal of a terminated dialog document refused, publishing anew", "status", res.Status, "reason", res.Reason, "err", res.Err)
		r.etag, r.forceInitial, r.srvTerminated = "", true, false
	default:
		log().Warn("publish refused", "status", res.Status, "reason", res.Reason, "err", res.Err)
		if e.refusedAheadOfRemoval(r, op, res, log) {
			return
		}
		r.resolve(op.gen, res)
		if op.kind == pubRemove {
			if r.remove && r.gen == op.gen {
				e.dropPub(r, res)
				return
			}
			break // published again meanwhile: that state goes under the ETag
		}
		e.refusePub(r, op.gen, res.Status, now, log())
		return
	}
	if r.remove || r.gen > r.sentGen || r.forceInitial || r.etag == "" {
		e.queue.push(r)
		return
	}
	e.schedulePubRefresh(r)
}

// refusedAheadOfRemoval handles a refusal of op when op is the document
// sent ahead of r's removal (see nextPubOp), or the terminated document of
// a swept dialog publication (whose removal starts here): the document
// counts as refused (it is not sent again), its waiters get the refusal,
// and the removal goes at once instead of waiting on the refused retry.
// It reports whether op was that document. Shard locked.
func (e *Engine) refusedAheadOfRemoval(r *pubRec, op pubOp, res Result, log func() *slog.Logger) bool {
	if r.sweepRemove && !r.remove && op.kind == pubModify {
		// The terminated document of a swept dialog publication (see
		// endDialogs) refused: the removal that its acceptance would have
		// started (sweepDone) goes now, or the lit document stays.
		r.sweepRemove, r.remove = false, true
		r.gen++
		e.markDirty(r, &r.dirty)
	}
	if !r.remove || op.kind != pubModify {
		return false
	}
	log().Info("document ahead of the removal refused, removing", "status", res.Status)
	r.docRefused(op.gen)
	r.resolve(op.gen, res)
	e.queue.push(r)
	return true
}

// schedulePubRefresh arms r's refresh (or lifetime end). Shard locked.
func (e *Engine) schedulePubRefresh(r *pubRec) {
	at := time.Unix(0, r.nextRefresh)
	if end := time.Unix(r.endAt, 0); r.endAt != 0 && (end.Before(at) || r.lapse) {
		at = end
	}
	e.sched.Schedule(r, at)
}

// retryable reports a transient failure: timeout, transport error, 408, 5xx.
// A 6xx is a global refusal, tried again only on the refused backoff.
func retryable(res Result) bool {
	return res.Status == 0 || res.Status == 408 || (res.Status >= 500 && res.Status < 600)
}

// Publication returns a snapshot of one publication.
func (e *Engine) Publication(key Key) (PublicationInfo, bool) {
	key.Event = e.ev.canon(key.Event)
	s := e.pubShard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.pubs[key]
	if r == nil {
		return PublicationInfo{}, false
	}
	return r.info(), true
}

// Publications returns a snapshot of every publication.
func (e *Engine) Publications() []PublicationInfo {
	var out []PublicationInfo
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.Lock()
		for _, r := range s.pubs {
			out = append(out, r.info())
		}
		s.mu.Unlock()
	}
	return out
}

// PublicationStates counts the publications by event package and state,
// copying none of them (what a metrics scrape reads).
func (e *Engine) PublicationStates() []StateCount {
	counts := map[[2]string]int{}
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.Lock()
		for _, r := range s.pubs {
			counts[[2]string{r.key.Event, r.state.String()}]++
		}
		s.mu.Unlock()
	}
	return stateCounts(counts)
}

// stateCounts lists counts by event package and state.
func stateCounts(counts map[[2]string]int) []StateCount {
	out := make([]StateCount, 0, len(counts))
	for k, n := range counts {
		out = append(out, StateCount{Event: k[0], State: k[1], N: n})
	}
	return out
}

func (r *pubRec) info() PublicationInfo {
	ct := r.ctype
	if ct == "" {
		ct = r.ev.contentType
	}
	pi := PublicationInfo{Key: r.key, Flag: int(r.flag), ContentType: ct, Body: bytes.Clone(r.body),
		ETag: r.etag, State: r.state.String(), LastStatus: int(r.lastStatus), LastReason: r.lastReason,
		ExtraHeaders: slices.Clone(r.hdrs())}
	if r.srvExpires != 0 {
		pi.Expires = time.Unix(r.srvExpires, 0)
	}
	if r.nextRefresh != 0 && r.state == pubActive {
		pi.NextRefresh = time.Unix(0, r.nextRefresh)
	}
	if x := r.rare; x != nil {
		if r.failed && x.retryAt != 0 {
			pi.NextRetry = time.Unix(0, x.retryAt)
		}
		pi.Refusals = int(x.refusals)
	}
	return pi
}
