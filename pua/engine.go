package pua

import (
	"cmp"
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/clock"
	"github.com/puaside/puaside/metrics"
	"github.com/puaside/puaside/sched"
)

// Options are the engine's collaborators.
type Options struct {
	// Logger receives the engine's logs; nil means slog.Default().
	Logger *slog.Logger
	// Store persists records; nil means no persistence.
	Store Store
	// Metrics receives counters; nil is allowed.
	Metrics *metrics.Metrics
	// Clock drives refreshes, backoff, lifetimes and write-behind; nil means
	// the real clock.
	Clock Clock
	// Owners are the flags (FlagUsrloc, ...) whose owners claim their
	// loaded records at start and then call ClaimsDone; the loaded records
	// of these flags that nobody claims are removed at the server (see
	// Claim). Records of other flags are kept.
	Owners []int
	// OnPublishResult, when set, is told the final outcome of every
	// PUBLISH transaction (op is initial, modify, refresh or remove), with
	// no lock of the engine held, on the goroutine that ended the
	// transaction: for a reply over UDP that is the listener's reading
	// goroutine, so it must be quick and must not block. A request that
	// could not be sent at all (no target, a send error) ends on the
	// goroutine that sent it, which may be that of the Publish or Remove
	// call, holding the caller's own locks: it must not call back into
	// the engine's callers.
	OnPublishResult func(key Key, op string, res Result)
	// Ownership, with several instances on one database, tells which
	// presentities this instance sends and writes for (see cluster.go);
	// nil means all of them.
	Ownership Ownership
	// Journal, when set with a Store and sync_etags, takes the prompt
	// writes: they are appended to it and reach the store with the
	// periodic write-behind (see Journal). Nil: prompt writes go to the
	// store.
	Journal Journal
	// JournalLimit is the size of the journal past which it is suspended
	// (prompt writes go to the store); 0 means DefaultJournalLimit.
	JournalLimit int64
}

// shard is one lock domain of the record tables.
type shard struct {
	mu   sync.Mutex
	pubs map[Key]*pubRec
	subs map[SubKey]*subRec
}

// dialogKey finds a subscription from a NOTIFY: Call-ID and our tag.
type dialogKey struct {
	callID   string
	localTag string
}

// Engine is the presence user agent: it owns every publication and
// subscription record and the SIP user agent that carries them.
type Engine struct {
	cfg   Config
	owned ownerCounts // live publications per owner flag
	onPub func(key Key, op string, res Result)
	log   *slog.Logger
	store Store
	m     *metrics.Metrics
	clock Clock
	ev    *events
	seed  maphash.Seed

	shards []shard
	sched  *sched.Scheduler[tasker]
	queue  *readyQueue

	dmu     sync.Mutex
	dialogs map[dialogKey]*subRec

	hmu      sync.RWMutex
	handlers map[int]NotifyHandler

	// loaded is closed once Start has loaded the stored records (or failed
	// to): a NOTIFY waits for it, since the SIP listeners are up before the
	// dialogs of restored subscriptions are known.
	loaded     chan struct{}
	loadedOnce sync.Once

	wmu        sync.Mutex // write-behind state
	dirty      []tasker
	removed    []Record
	flushT     Timer
	flushBusy  sync.Mutex
	syncing    bool // a prompt write is running
	syncAgain  bool // and another is wanted after it
	syncClosed bool // Stop: no more prompt writes
	syncWG     sync.WaitGroup

	journal    Journal // nil: prompt writes go to the store
	jlimit     int64
	jmu        sync.Mutex // orders the journal's appends; held by flush while it rotates and appends
	jsuspended bool       // the journal is not used until a store write succeeds; jmu
	jdirty     []tasker   // records changed since the last append; wmu
	jremoved   []Record   // removals not appended yet; wmu
	// flushTaken, for tests, runs in flush once the batch is taken, before
	// its records are read.
	flushTaken func()

	sip *sipStack

	owners map[int]struct{} // flags whose records are claimed at start
	cmu    sync.Mutex
	claims claimState

	own   Ownership
	omu   sync.Mutex
	ready map[int]int64 // shards gained and continued (their epoch then): sent and written for

	reach  reachability // the presence server's, per replies and probes (probe.go)
	writes *WriteHealth // recent store writes (ready.go)

	lmu     sync.Mutex // lifecycle
	started bool
	stopped bool
	workers sync.WaitGroup
	// slots caps the transactions in flight at max_outstanding: a worker
	// takes one before it takes a record; a PUBLISH, whose outcome is
	// applied where its transaction ends, gives it back then.
	slots chan struct{}
	// releaseSlot is release as a func value, made once (a method value
	// taken per PUBLISH is an allocation).
	releaseSlot func()
	inflight    sync.WaitGroup // PUBLISHes sent and not applied yet
	// callers counts the Publish and Remove calls under way, which may
	// send a PUBLISH themselves (kickPubHere); Stop waits for them.
	callers sync.WaitGroup
	// sendsInline: the default next hop is a SIP URI with an IP address
	// and UDP, so that sending needs no lookup and never blocks the
	// caller (kickPubHere).
	sendsInline bool
	// running: Start has started the SIP stack and the workers; before
	// that a publication waits in the queue, as it always did.
	running  atomic.Bool
	stopCtx  context.Context
	stopFunc context.CancelFunc
}

// New builds an engine; nothing is bound until Start.
func New(cfg Config, opts Options) (*Engine, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("pua: %w", err)
	}
	e := &Engine{
		cfg:      cfg,
		log:      opts.Logger,
		store:    opts.Store,
		m:        opts.Metrics,
		clock:    opts.Clock,
		ev:       newEvents(),
		seed:     maphash.MakeSeed(),
		dialogs:  make(map[dialogKey]*subRec),
		handlers: make(map[int]NotifyHandler),
		owners:   make(map[int]struct{}, len(opts.Owners)),
		loaded:   make(chan struct{}),
		onPub:    opts.OnPublishResult,
		own:      opts.Ownership,
		ready:    make(map[int]int64),
	}
	if opts.Journal != nil && opts.Store != nil && cfg.SyncETags {
		e.journal, e.jlimit = opts.Journal, opts.JournalLimit
		if e.jlimit <= 0 {
			e.jlimit = DefaultJournalLimit
		}
	}
	for _, f := range opts.Owners {
		e.owners[f] = struct{}{}
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	if e.clock == nil {
		e.clock = clock.Real{}
	}
	e.writes = NewWriteHealth(e.clock)
	e.shards = make([]shard, 1<<cfg.HashSize)
	for i := range e.shards {
		e.shards[i].pubs = make(map[Key]*pubRec)
		e.shards[i].subs = make(map[SubKey]*subRec)
	}
	e.queue = newReadyQueue(func(n int) { e.m.QueueDepth("pua_pending", n) })
	e.sched = newScheduler(e.clock, e.queue.push)
	e.stopCtx, e.stopFunc = context.WithCancel(context.Background())
	e.slots = make(chan struct{}, max(cfg.MaxOutstanding, 1))
	e.releaseSlot = e.release
	e.sendsInline = literalUDPHop(cmp.Or(cfg.OutboundProxy, cfg.ServerAddress))
	s, err := newSIPStack(e)
	if err != nil {
		return nil, err
	}
	e.sip = s
	// Stop ends the engine's own transactions still in flight as it ends
	// sipgo's (their contexts derive from stopCtx).
	context.AfterFunc(e.stopCtx, func() { e.sip.txs.abort(context.Canceled) })
	return e, nil
}

func (e *Engine) pubShard(k Key) *shard {
	var h maphash.Hash
	h.SetSeed(e.seed)
	h.WriteString(k.PresURI)
	h.WriteString(k.Event)
	h.WriteString(k.ID)
	return &e.shards[h.Sum64()&uint64(len(e.shards)-1)]
}

func (e *Engine) subShard(k SubKey) *shard {
	var h maphash.Hash
	h.SetSeed(e.seed)
	h.WriteString(k.PresURI)
	h.WriteString(k.WatcherURI)
	h.WriteString(k.Event)
	h.WriteString(k.ID)
	return &e.shards[h.Sum64()&uint64(len(e.shards)-1)]
}

// Start binds the SIP listeners, loads stored records and starts the
// workers and timers. Records loaded carry on with their stored ETags and
// dialogs.
func (e *Engine) Start(ctx context.Context) error {
	e.lmu.Lock()
	defer e.lmu.Unlock()
	if e.started {
		return fmt.Errorf("pua: start: already started")
	}
	if e.stopped {
		return ErrStopped
	}
	if err := e.sip.start(ctx); err != nil {
		return err
	}
	err := e.load(ctx)
	e.loadedOnce.Do(func() { close(e.loaded) })
	if err != nil {
		e.sip.close()
		return err
	}
	e.started = true
	e.openClaims()
	for range e.cfg.MaxOutstanding {
		e.workers.Add(1)
		go e.worker()
	}
	e.running.Store(true)
	if e.store != nil {
		e.armFlush()
	}
	e.log.Info("pua engine started", "contact", e.ContactURI(), "server", e.cfg.ServerAddress)
	return nil
}

// Stop stops the timers and workers (waiting, within ctx, for the
// transactions in flight), flushes the store and closes the SIP stack. The
// final flush has a deadline of its own (stop_flush_timeout), so it runs
// even when ctx ended while transactions were still waiting.
func (e *Engine) Stop(ctx context.Context) error {
	e.lmu.Lock()
	if e.stopped {
		e.lmu.Unlock()
		return nil
	}
	e.stopped = true
	started := e.started
	e.lmu.Unlock()

	e.sched.Stop()
	e.queue.close()
	e.cmu.Lock()
	if e.claims.timer != nil {
		e.claims.timer.Stop()
	}
	e.claims.open = false
	e.cmu.Unlock()
	e.wmu.Lock()
	if e.flushT != nil {
		e.flushT.Stop()
	}
	e.wmu.Unlock()

	done := make(chan struct{})
	go func() { e.workers.Wait(); e.callers.Wait(); e.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		e.stopFunc() // abort transactions still in flight
		<-done
	}
	e.stopFunc()
	e.wmu.Lock()
	e.syncClosed = true
	e.wmu.Unlock()
	e.syncWG.Wait()
	var err error
	if started && e.store != nil {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.StopFlushTimeout)
		err = e.flush(fctx, true)
		cancel()
	}
	e.sip.close()
	e.failWaiters()
	return err
}

// worker runs queued records; there are max_outstanding workers and as
// many slots (transactions in flight). A SUBSCRIBE holds its worker until
// its reply; a PUBLISH only until it is sent.
func (e *Engine) worker() {
	defer e.workers.Done()
	for {
		t, ok := e.queue.pop()
		if !ok {
			return
		}
		// The slot is taken after the record: an idle worker holds none,
		// so that a caller can take one and send itself (kickPubHere).
		// The record is read when it runs, so a wait here loses no change.
		select {
		case e.slots <- struct{}{}:
		case <-e.stopCtx.Done():
			return
		}
		if e.isStopped() {
			e.release() // popped before Stop: dropped, as the queue's rest
			return
		}
		switch r := t.(type) {
		case *pubRec:
			e.runPublish(r, e.releaseSlot)
		case *subRec:
			e.runSubscribe(r)
			e.release()
		default:
			e.release()
		}
	}
}

// release gives back a worker's slot.
func (e *Engine) release() { <-e.slots }

// enter counts a Publish or Remove call in e.callers unless Stop was
// called; the caller calls e.callers.Done when it returns.
func (e *Engine) enter() bool {
	e.lmu.Lock()
	defer e.lmu.Unlock()
	if e.stopped {
		return false
	}
	e.callers.Add(1)
	return true
}

// literalUDPHop reports whether hop is a sip: URI whose host is an IP
// address and whose transport is UDP (or unset), so that a request to it
// is sent without a name lookup and without a connection.
func literalUDPHop(hop string) bool {
	var u sip.Uri
	if hop == "" || sip.ParseUri(hop, &u) != nil || !strings.EqualFold(u.Scheme, "sip") {
		return false
	}
	if net.ParseIP(strings.Trim(u.Host, "[]")) == nil {
		return false
	}
	tr, _ := u.UriParams.Get("transport")
	return tr == "" || strings.EqualFold(tr, "udp")
}

// isStopped reports whether Stop was called.
func (e *Engine) isStopped() bool {
	e.lmu.Lock()
	defer e.lmu.Unlock()
	return e.stopped
}

// failWaiters releases Wait callers of records left unfinished at Stop.
func (e *Engine) failWaiters() {
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.Lock()
		for _, r := range s.pubs {
			r.resolve(^uint64(0), Result{Err: ErrStopped})
		}
		for _, r := range s.subs {
			resolveWaiters(&r.waiters, ^uint64(0), Result{Err: ErrStopped})
		}
		s.mu.Unlock()
	}
}

// HandleNotify registers the handler for NOTIFYs of subscriptions owned by
// flag (replacing any earlier one).
func (e *Engine) HandleNotify(flag int, h NotifyHandler) {
	e.hmu.Lock()
	defer e.hmu.Unlock()
	if h == nil {
		delete(e.handlers, flag)
		return
	}
	e.handlers[flag] = h
}

func (e *Engine) handler(flag int) NotifyHandler {
	e.hmu.RLock()
	defer e.hmu.RUnlock()
	return e.handlers[flag]
}

// RegisterEvent adds an event package with its default content type.
// Registering an existing name again with the same content type is a no-op.
// (The store writes Kamailio's event bit of a known package name.)
func (e *Engine) RegisterEvent(name, contentType string) error {
	return e.ev.register(name, contentType)
}

// ContactURI returns the Contact put in our SUBSCRIBEs
// (sip:puaside@host:port).
func (e *Engine) ContactURI() string { return e.sip.contactURI() }

// waiter is a Wait caller expecting the result of the transaction that
// carries generation gen of a record's desired state.
type waiter struct {
	gen uint64
	ch  chan Result
}

// resolveWaiters hands res to every waiter for a generation up to gen.
func resolveWaiters(ws *[]waiter, gen uint64, res Result) {
	if len(*ws) == 0 {
		return
	}
	keep := (*ws)[:0]
	for _, w := range *ws {
		if w.gen <= gen {
			w.ch <- res
			continue
		}
		keep = append(keep, w)
	}
	clear((*ws)[len(keep):])
	*ws = keep
	if len(keep) == 0 {
		*ws = nil
	}
}

// wait blocks for a waiter's result.
func wait(ctx context.Context, ch chan Result) (Result, error) {
	select {
	case res := <-ch:
		return res, res.Err
	case <-ctx.Done():
		return Result{}, fmt.Errorf("pua: wait: %w", ctx.Err())
	}
}

// backoff returns the delay before retry number attempt (1-based):
// retry_min·2^(attempt-1) capped at retry_max, with jitter in [d/2, d].
func (e *Engine) backoff(attempt int) time.Duration {
	return expBackoff(e.cfg.RetryMin, e.cfg.RetryMax, attempt)
}

// refreshAt returns when to refresh a grant of granted starting at now:
// granted − max(5 s, 10 %), minus a little jitter, and never later than
// half-way for very short grants.
func refreshAt(now time.Time, granted time.Duration) time.Time {
	margin := max(5*time.Second, granted/10)
	if margin > granted/2 {
		margin = granted / 2
	}
	if j := margin / 5; j > 0 {
		margin += rand.N(j)
	}
	return now.Add(granted - margin)
}
