package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/puaside/puaside/clock"
	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/internal/trusted"
	"github.com/puaside/puaside/metrics"
)

// Input names, the "input" label of the ingest metrics and the keys of Addrs.
const (
	InputReplicate = "replicate"
	InputTrace     = "trace"
	InputHEP       = "hep"
	InputJSON      = "json"
)

// Drop reasons (the "reason" label of puaside_ingest_dropped_total).
const (
	reasonUntrusted    = "untrusted"
	reasonOversize     = "oversize"
	reasonParse        = "parse_error"
	reasonHEPDecode    = "hep_decode"
	reasonHEPAuth      = "hep_auth"
	reasonQueueFull    = "queue_full"
	reasonStopped      = "stopped"
	reasonFraming      = "framing"
	reasonTooManyConn  = "too_many_conns"
	reasonTLSHandshake = "tls_handshake"
)

// Ingest results (the "result" label of puaside_ingest_messages_total).
const (
	resultAccepted  = "accepted"
	resultDuplicate = "duplicate"
	resultIgnored   = "ignored"
	resultError     = "error"
)

const (
	// defaultWorkers is the number of delivery goroutines when
	// Options.Workers is 0.
	defaultWorkers = 4
	// maxTCPConns bounds the open TCP connections per listener.
	maxTCPConns = 256
	// logInterval is the minimum interval between two log lines about the
	// same source or the same kind of bad input.
	logInterval = time.Minute
	// queueName is the label of the queue depth gauge.
	queueName = "ingest"
)

// Handlers receive the normalised events. They are supplied by the wiring
// code (the usrloc, dialoginfo and bla trackers). They are called from
// several worker goroutines, but the events of one AoR (REGISTER traffic,
// Registration) or one Call-ID (call traffic, DialogState) are always
// delivered by the same worker, in arrival order. A nil handler makes the
// matching input counted as ignored.
type Handlers struct {
	// Register gets REGISTER requests and the responses whose CSeq method is REGISTER.
	Register func(ctx context.Context, m event.SIP)
	// Call gets INVITE, ACK, CANCEL, BYE, UPDATE, PRACK and their responses.
	Call func(ctx context.Context, m event.SIP)
	// Registration gets registration events posted as JSON.
	Registration func(ctx context.Context, r event.Registration)
	// Dialog gets call-state events posted as JSON.
	Dialog func(ctx context.Context, d event.DialogState)
}

// Options are the dependencies of an Ingest.
type Options struct {
	// Logger receives the log lines (bad input is logged at most once a
	// minute per source or reason). Nil discards them.
	Logger *slog.Logger
	// Metrics counts input, duplicates and drops. Nil is allowed.
	Metrics *metrics.Metrics
	// Clock gives arrival times, the dedup window and the log rate
	// limits; nil is the wall clock.
	Clock clock.Clock
	// Workers is the number of delivery goroutines (the queue is sharded
	// across them by AoR / Call-ID). 0 means 4.
	Workers int
}

// item is one unit of work on the queue.
type item struct {
	input string
	kind  string
	sip   event.SIP
	reg   *event.Registration
	dlg   *event.DialogState
}

// Ingest receives mirrored traffic and JSON events and delivers them to the
// Handlers. Build it with New, then Start it; Stop releases the sockets.
type Ingest struct {
	cfg     Config
	h       Handlers
	log     *slog.Logger
	m       *metrics.Metrics
	now     func() time.Time
	trust   *trust
	parser  *sip.Parser
	dedup   *dedup
	logLim  *trusted.Limiter
	seed    maphash.Seed
	shards  []shard
	ctx     context.Context // the handlers' (Start's, cancelled by Stop)
	queued  atomic.Int64
	stopped atomic.Bool

	mu       sync.Mutex
	started  bool
	closers  []func() error
	conns    map[net.Conn]struct{}
	addrs    map[string][]string
	readers  sync.WaitGroup
	workers  sync.WaitGroup
	stopCh   chan struct{}
	cancel   context.CancelFunc
	stopOnce sync.Once
}

// New checks cfg and builds an Ingest. Nothing is bound until Start.
func New(cfg Config, h Handlers, opts Options) (*Ingest, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	prefixes, _ := trusted.Parse(cfg.TrustedSources)
	in := &Ingest{
		cfg:    cfg,
		h:      h,
		log:    opts.Logger,
		m:      opts.Metrics,
		now:    clock.OrReal(opts.Clock).Now,
		trust:  newTrust(prefixes),
		parser: sip.NewParser(),
		logLim: trusted.NewLimiter(logInterval),
		seed:   maphash.MakeSeed(),
		conns:  make(map[net.Conn]struct{}),
		addrs:  make(map[string][]string),
		stopCh: make(chan struct{}),
	}
	if in.log == nil {
		in.log = slog.New(slog.DiscardHandler)
	}
	in.parser.MaxMessageLength = cfg.MaxMessageSize
	// Remember about as many keys as can arrive in a window at a high rate,
	// bounded by dedupMaxEntries.
	in.dedup = newDedup(cfg.DedupWindow, dedupMaxEntries)
	n := opts.Workers
	if n <= 0 {
		n = defaultWorkers
	}
	per := (cfg.QueueSize + n - 1) / n
	in.shards = make([]shard, n)
	for i := range in.shards {
		in.shards[i].ch = make(chan item, per)
	}
	return in, nil
}

// Start binds every configured listener and starts the readers and the
// workers. An error names the listen address that failed; nothing stays
// bound then. ctx is passed to the handlers.
func (in *Ingest) Start(ctx context.Context) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.started {
		return errors.New("ingest: already started")
	}
	type bound struct {
		input, network string
		pc             *net.UDPConn
		ln             net.Listener
	}
	var all []bound
	closeAll := func() {
		for _, b := range all {
			if b.pc != nil {
				b.pc.Close()
			}
			if b.ln != nil {
				b.ln.Close()
			}
		}
	}
	for _, l := range []struct {
		input string
		addrs []string
	}{{InputReplicate, in.cfg.ReplicateListen}, {InputTrace, in.cfg.TraceListen}, {InputHEP, in.cfg.HEPListen}} {
		for _, a := range l.addrs {
			network, addr, err := splitListen(a)
			if err != nil {
				closeAll()
				return err
			}
			b := bound{input: l.input, network: network}
			if network == "udp" {
				ua, err := net.ResolveUDPAddr("udp", addr)
				if err == nil {
					b.pc, err = net.ListenUDP("udp", ua)
				}
				if err != nil {
					closeAll()
					return fmt.Errorf("ingest: listen %s %s: %w", l.input, a, err)
				}
				if in.cfg.UDPReadBuffer > 0 {
					if err := b.pc.SetReadBuffer(in.cfg.UDPReadBuffer); err != nil {
						in.log.Warn("ingest: cannot set the UDP receive buffer", "input", l.input, "addr", a, "err", err)
					}
				}
				in.addrs[l.input] = append(in.addrs[l.input], "udp:"+b.pc.LocalAddr().String())
			} else {
				b.ln, err = net.Listen("tcp", addr)
				if err != nil {
					closeAll()
					return fmt.Errorf("ingest: listen %s %s: %w", l.input, a, err)
				}
				in.addrs[l.input] = append(in.addrs[l.input], network+":"+b.ln.Addr().String())
				if network == "tls" {
					conf, err := in.tlsConfig()
					if err != nil {
						closeAll()
						return err
					}
					b.ln = tls.NewListener(b.ln, conf)
				}
			}
			all = append(all, b)
		}
	}
	in.started = true
	wctx, cancel := context.WithCancel(ctx)
	in.cancel, in.ctx = cancel, wctx
	for i := range in.shards {
		in.workers.Add(1)
		go in.work(wctx, &in.shards[i])
	}
	for _, b := range all {
		in.readers.Add(1)
		if b.pc != nil {
			in.closers = append(in.closers, b.pc.Close)
			go in.serveUDP(b.input, b.pc)
		} else {
			in.closers = append(in.closers, b.ln.Close)
			go in.serveTCP(b.input, b.ln)
		}
		in.log.Info("ingest listening", "input", b.input, "addr", b.network+":"+addrOf(b.pc, b.ln))
	}
	return nil
}

func addrOf(pc *net.UDPConn, ln net.Listener) string {
	if pc != nil {
		return pc.LocalAddr().String()
	}
	return ln.Addr().String()
}

// Stop closes every socket, delivers what is still queued and stops the
// workers. It is safe to call more than once, and before Start.
func (in *Ingest) Stop() {
	in.stopOnce.Do(func() {
		in.stopped.Store(true)
		in.mu.Lock()
		for _, c := range in.closers {
			_ = c() // stopping: a close error changes nothing
		}
		for c := range in.conns {
			c.Close()
		}
		started := in.started
		in.mu.Unlock()
		in.readers.Wait()
		close(in.stopCh)
		in.workers.Wait()
		if started {
			in.cancel()
		}
	})
}

// Addrs returns the bound addresses per input (InputReplicate, InputTrace,
// InputHEP), as "udp:host:port" / "tcp:host:port", so that a listener
// configured with port 0 can be found.
func (in *Ingest) Addrs() map[string][]string {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make(map[string][]string, len(in.addrs))
	for k, v := range in.addrs {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// shard is one delivery queue and its worker: the items of one ordering
// key (orderKey) go to one shard and are delivered in arrival order.
type shard struct {
	ch chan item
	// mu is held while an item of the shard is delivered, by its worker
	// or by a reader delivering itself (enqueue's here).
	mu sync.Mutex
	// pending counts the items put on ch and not delivered yet; a reader
	// delivers itself only when it is 0, so that nothing overtakes them.
	pending atomic.Int64
}

// work delivers the items of one shard until Stop, then drains the shard.
func (in *Ingest) work(ctx context.Context, sh *shard) {
	defer in.workers.Done()
	for {
		select {
		case it := <-sh.ch:
			in.workOne(ctx, sh, it)
		case <-in.stopCh:
			for {
				select {
				case it := <-sh.ch:
					in.workOne(ctx, sh, it)
				default:
					return
				}
			}
		}
	}
}

// workOne delivers an item taken from sh's queue.
func (in *Ingest) workOne(ctx context.Context, sh *shard, it item) {
	in.m.QueueDepth(queueName, int(in.queued.Add(-1)))
	sh.mu.Lock()
	in.deliver(ctx, it)
	sh.pending.Add(-1)
	sh.mu.Unlock()
}

// deliver calls the handler of one item; a panicking handler is logged
// and counted, and the caller carries on.
func (in *Ingest) deliver(ctx context.Context, it item) {
	defer func() {
		if r := recover(); r != nil {
			in.m.Ingest(it.input, it.kind, resultError)
			in.log.Error("ingest: handler panic", "input", it.input, "kind", it.kind, "panic", r)
		}
	}()
	switch {
	case it.reg != nil:
		in.h.Registration(ctx, *it.reg)
	case it.dlg != nil:
		in.h.Dialog(ctx, *it.dlg)
	case it.kind == kindCall:
		in.h.Call(ctx, it.sip)
	default:
		in.h.Register(ctx, it.sip)
	}
}

// held is an item its reader delivers itself (enqueue's here): sh is
// locked until deliverHeld. The zero value holds nothing.
type held struct {
	sh *shard
	it item
}

// deliverHeld delivers h's item, if any, and unlocks its shard.
func (in *Ingest) deliverHeld(h held) {
	if h.sh == nil {
		return
	}
	in.deliver(in.ctx, h.it)
	h.sh.mu.Unlock()
}

// enqueue puts it on the shard of key without blocking. It reports false
// (and counts the drop) when the shard is full or the Ingest is stopped.
//
// here is a reader's hint that it is not behind (pace): then, when the
// shard has nothing queued and no item in delivery, enqueue returns the
// item held instead of queueing it, and the reader delivers it itself
// with deliverHeld, sparing the hand-off to the worker. A reader that is behind queues, so that the
// workers spread the load over the processors.
func (in *Ingest) enqueue(key string, it item, here bool) (bool, held) {
	if in.stopped.Load() {
		in.m.Drop(it.input, reasonStopped)
		return false, held{}
	}
	sh := &in.shards[maphash.String(in.seed, key)%uint64(len(in.shards))]
	if here && sh.mu.TryLock() {
		if sh.pending.Load() == 0 {
			in.m.Ingest(it.input, it.kind, resultAccepted)
			return true, held{sh: sh, it: it}
		}
		sh.mu.Unlock()
	}
	sh.pending.Add(1)
	select {
	case sh.ch <- it:
		in.m.QueueDepth(queueName, int(in.queued.Add(1)))
		in.m.Ingest(it.input, it.kind, resultAccepted)
		return true, held{}
	default:
		sh.pending.Add(-1)
		in.m.Drop(it.input, reasonQueueFull)
		if in.logLim.Allow("queue_full/"+it.input, in.now()) {
			in.log.Warn("ingest: queue full, dropping input", "input", it.input, "queue_size", in.cfg.QueueSize)
		}
		return false, held{}
	}
}

// allowed applies trusted_sources to a source address, counting and
// logging (once a minute per source) what it refuses.
func (in *Ingest) allowed(input string, src netip.Addr) bool {
	if in.trust.allowed(src) {
		return true
	}
	in.m.Drop(input, reasonUntrusted)
	if in.logLim.Allow("untrusted/"+src.String(), in.now()) {
		in.log.Warn("ingest: dropping input from untrusted source", "input", input, "src", src.String())
	}
	return false
}

// bad counts and logs (rate-limited per input and reason) a dropped input.
func (in *Ingest) bad(input, reason string, src netip.AddrPort, err error) {
	in.m.Drop(input, reason)
	if in.logLim.Allow("bad/"+input+"/"+reason, in.now()) {
		in.log.Warn("ingest: dropping bad input", "input", input, "reason", reason, "src", src.String(), "err", err)
	}
}

// handleSIP runs one raw SIP copy (replicate or trace input) through
// parse → dedup → classify → queue. reply, when not nil, sends bytes back
// to the source of the copy; it is used only for replicated requests.
// here is the reader's hint for enqueue (it may deliver the copy itself).
func (in *Ingest) handleSIP(input string, src netip.AddrPort, b []byte, reply func([]byte), here bool) {
	if len(b) > in.cfg.MaxMessageSize {
		in.bad(input, reasonOversize, src, fmt.Errorf("%d bytes", len(b)))
		return
	}
	if input != InputReplicate && in.duplicateCopy(input, b) {
		return // a replicated copy is answered, so it takes the full path
	}
	m, err := parseMirror(in.parser, b)
	if err != nil {
		in.bad(input, reasonParse, src, err)
		return
	}
	answer := input == InputReplicate && reply != nil && m.req != nil && m.req.Method != sip.ACK
	if !in.bounded(input, src, b, m) {
		// Dropped on purpose: answered all the same, so that the proxy
		// does not retransmit a copy that will never be taken.
		if answer {
			reply(statelessOK(m.req, src))
		}
		return
	}
	ev := event.SIP{Msg: m.msg, Source: event.SourceTrace, Src: src, Time: in.now()}
	if input == InputReplicate {
		ev.Source = event.SourceReplicate
	}
	applyXHeaders(m.msg, &ev.Src, &ev.Dst, &ev.Time)
	var res []byte
	if answer {
		res = statelessOK(m.req, src)
	}
	ok, h := in.process(input, m, ev, here)
	if ok && res != nil {
		reply(res) // answered first: the proxy's transaction ends sooner
	}
	in.deliverHeld(h)
}

// bounded applies the length bounds to a parsed copy (raw is its bytes);
// over-long input is counted with its reason, logged (rate-limited) and
// refused.
func (in *Ingest) bounded(input string, src netip.AddrPort, raw []byte, m *mirrored) bool {
	e := in.cfg.checkHeaderLines(raw)
	if e == nil {
		e = in.cfg.checkMirror(m)
	}
	if e == nil {
		return true
	}
	in.bad(input, e.reason, src, e)
	return false
}

// process dedups, classifies and queues a parsed copy. It reports whether
// the copy was taken care of (queued, duplicate or ignored); false means it
// was dropped (queue full) and must not be acknowledged. A copy held (see
// enqueue) is the caller's to deliver.
func (in *Ingest) process(input string, m *mirrored, ev event.SIP, here bool) (bool, held) {
	handler := in.h.Call
	if m.kind == kindRegister || m.kind == kindRegisterReply {
		handler = in.h.Register
	}
	if m.kind == kindOther || handler == nil {
		in.m.Ingest(input, m.kind, resultIgnored)
		return true, held{}
	}
	f := m.keyFields()
	if in.dedup.seenBefore(in.dedup.key(input, &f), in.now()) {
		in.m.Ingest(input, m.kind, resultDuplicate)
		return true, held{}
	}
	return in.enqueue(m.orderKey(), item{input: input, kind: m.kind, sip: ev}, here)
}

// handleHEP decodes one HEP packet and runs its SIP payload through the
// pipeline. HEP is never answered. here is the reader's hint for enqueue.
func (in *Ingest) handleHEP(src netip.AddrPort, b []byte, here bool) {
	if len(b) > in.cfg.MaxMessageSize {
		in.bad(InputHEP, reasonOversize, src, fmt.Errorf("%d bytes", len(b)))
		return
	}
	p, err := DecodeHEP(b)
	if err != nil {
		in.bad(InputHEP, reasonHEPDecode, src, err)
		return
	}
	if in.cfg.HEPAuthKey != "" && p.AuthKey != in.cfg.HEPAuthKey {
		in.bad(InputHEP, reasonHEPAuth, src, errors.New("missing or wrong auth key"))
		return
	}
	if p.ProtoType != HEPProtoSIP {
		in.m.Ingest(InputHEP, kindOther, resultIgnored)
		return
	}
	if in.duplicateCopy(InputHEP, p.Payload) {
		return
	}
	m, err := parseMirror(in.parser, p.Payload)
	if err != nil {
		in.bad(InputHEP, reasonParse, src, err)
		return
	}
	if !in.bounded(InputHEP, src, p.Payload, m) {
		return
	}
	ev := event.SIP{Msg: m.msg, Source: event.SourceHEP, Src: p.Src, Dst: p.Dst, Time: p.Time}
	if !ev.Src.IsValid() {
		ev.Src = src
	}
	if ev.Time.IsZero() {
		ev.Time = in.now()
	}
	_, h := in.process(InputHEP, m, ev, here)
	in.deliverHeld(h)
}
