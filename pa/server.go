package pa

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/puaside/puaside/clock"
	"github.com/puaside/puaside/internal/siplisten"
	"github.com/puaside/puaside/internal/siptls"
	"github.com/puaside/puaside/internal/udpio"
	"github.com/puaside/puaside/internal/wsguard"
	"github.com/puaside/puaside/sched"
)

// cseqBlock is how many CSeqs (and versions) a dialog reserves per store
// write.
const cseqBlock = 64

// Options are the server's collaborators; all are optional.
type Options struct {
	// Store keeps publications and subscriptions; nil keeps them in memory.
	Store Store
	// Logger receives logs; nil is slog.Default().
	Logger *slog.Logger
	// Clock drives expiries and retries; nil is the wall clock.
	Clock clock.Clock
	// Registerer receives the server's metrics; nil registers none.
	Registerer prometheus.Registerer
	// OwnDialog reports whether the dialog with id dialogID of a
	// dialog;sla document belongs to the phone whose SUBSCRIBE Contact is
	// watcherContact (bla.OwnDialog in production); such dialogs are left
	// out of that watcher's NOTIFYs. Nil leaves every dialog in.
	OwnDialog func(watcherContact, dialogID string) bool
	// LocalDomain reports whether a domain is local, for the policy
	// "local"; nil counts only the presentity's own domain as local.
	LocalDomain func(host string) bool
	// OnWatchers, when set, is told a presentity's watchers (every event
	// package) each time they change: a subscription accepted, ended or
	// authorized (the lamp board shows them). It is called with the
	// server's lock held and must not call back into the server.
	OnWatchers func(presURI string, watchers []WatcherState)
	// Gateway, when set, is told of the watchers of its presentities
	// (see Gateway), whose owners decide them: with no policy rule naming
	// them, they are held pending until the owner answers.
	Gateway Gateway
	// Rules keeps the policy rules managed at run time (PutRule,
	// DeleteRule); nil keeps them in memory only.
	Rules RuleStore
	// Cluster shares the state with the other instances on the database
	// (cluster.enabled); nil is a single instance. It needs Store.
	Cluster *Cluster
}

// WatcherState is one watcher of a presentity as OnWatchers tells it.
type WatcherState struct {
	// URI is the watcher's AoR, Event the package watched, Status active
	// or pending.
	URI, Event, Status string
}

// Server is the presence server.
type Server struct {
	cfg     Config
	o       Options
	log     *slog.Logger
	clk     clock.Clock
	met     *serverMetrics
	listens []listenAddr
	tls     *siptls.Files

	// rulesMu guards dbRules, the rules of the RuleStore (most specific
	// first), checked before the configuration's.
	rulesMu sync.RWMutex
	dbRules []Rule

	mu      sync.Mutex
	pres    map[presKey]*presentity
	subs    map[dialogKey]*watcher
	etags   map[string]*publication
	seq     int64
	stopped bool
	running bool // Start is done: NOTIFYs may go out

	subSched *sched.Scheduler[*watcher]
	pubSched *sched.Scheduler[*publication]

	// persistence: what the next batch writes, and who waits for it.
	dirtyW map[dialogKey]*watcher
	goneW  map[dialogKey]WatcherRecord
	dirtyP map[pubID]*publication
	// unclaimed are the loaded in-process publications no owner claimed
	// yet, with their owner's flag.
	unclaimed map[pubID]int
	goneP     map[pubID]PublicationRecord
	waiting   *flushWait
	kickCh    chan struct{}
	// flushMu makes one flush at a time, from its batch to its commit:
	// two batches committing out of order would bring back removed rows.
	flushMu sync.Mutex

	// several instances (Options.Cluster): the shards continued
	// (ShardsGained), being handed over, being taken over, the owner's updates of its dialogs to write, and the
	// change log read so far.
	ready     map[int]bool
	handing   map[int]bool
	gaining   map[int]int64
	notifiedW map[dialogKey]*watcher
	syncMu    sync.Mutex
	changes   changeCursor

	// SIP
	sipMu    sync.RWMutex
	ua       *sipgo.UserAgent
	cl       *sipgo.Client
	closers  []io.Closer
	contact  sip.Uri
	ports    map[string]int // transport ("UDP", "WSS", ...) → bound port
	udpLaddr sip.Addr
	addrs    []string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// flushWait is one batch's completion.
type flushWait struct {
	done chan struct{}
	err  error
}

// New builds a server; nothing listens until Start.
func New(cfg Config, o Options) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("pa: %w", err)
	}
	s := &Server{
		cfg: cfg, o: o, log: o.Logger, clk: clock.OrReal(o.Clock),
		pres: map[presKey]*presentity{}, subs: map[dialogKey]*watcher{}, etags: map[string]*publication{},
		dirtyW: map[dialogKey]*watcher{}, goneW: map[dialogKey]WatcherRecord{},
		dirtyP: map[pubID]*publication{}, goneP: map[pubID]PublicationRecord{}, unclaimed: map[pubID]int{},
		waiting: &flushWait{done: make(chan struct{})}, kickCh: make(chan struct{}, 1),
		ready: map[int]bool{}, handing: map[int]bool{}, gaining: map[int]int64{}, notifiedW: map[dialogKey]*watcher{},
	}
	if o.Cluster != nil && (o.Store == nil || o.Cluster.Ownership == nil || o.Cluster.Changes == nil) {
		return nil, fmt.Errorf("pa: a cluster needs a store, an ownership and a change log")
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "pa")
	for _, l := range cfg.Listen {
		la, err := parseListen(l)
		if err != nil {
			return nil, fmt.Errorf("pa: %w", err)
		}
		s.listens = append(s.listens, la)
	}
	var err error
	if s.tls, err = siptls.NewFiles(cfg.TLS); err != nil {
		return nil, fmt.Errorf("pa: %w", err)
	}
	if s.met, err = newServerMetrics(o.Registerer, s); err != nil {
		return nil, fmt.Errorf("pa: %w", err)
	}
	s.subSched = sched.New(s.clk, s.fireWatchers)
	s.pubSched = sched.New(s.clk, s.firePublications)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Start loads the stored state, binds the listeners and starts the
// writer. Stored subscriptions continue where they were: the next change
// is notified with a higher CSeq, without the watcher subscribing again.
func (s *Server) Start(ctx context.Context) error {
	if s.o.Cluster != nil {
		// The changes written from here on are read after the load (a
		// change read twice is applied twice, harmlessly).
		last, err := s.o.Cluster.Changes.LastPresenceChange(ctx)
		if err != nil {
			return fmt.Errorf("pa: change log: %w", err)
		}
		s.changes = newChangeCursor(last)
	}
	if s.o.Store != nil {
		pubs, subs, err := s.o.Store.LoadPresence(ctx)
		if err != nil {
			return fmt.Errorf("pa: load: %w", err)
		}
		s.restore(pubs, subs)
	}
	if err := s.loadRules(ctx); err != nil {
		return err
	}
	if err := s.startSIP(ctx); err != nil {
		return err
	}
	s.wg.Add(1)
	go s.writer()
	s.mu.Lock()
	s.running = true
	s.mu.Unlock()
	s.notifyPending()
	if s.o.Cluster != nil {
		s.wg.Add(1)
		go s.syncLoop()
	}
	s.log.Info("presence server listening", "addrs", s.Addrs(), "presentities", s.presentityCount(), "subscriptions", s.subscriptionCount())
	return nil
}

// Stop closes the listeners, waits for NOTIFYs in flight (within ctx) and
// writes what is pending.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()
	s.subSched.Stop()
	s.pubSched.Stop()
	done := make(chan struct{})
	go func() {
		s.cancel()
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	err := s.flush(ctx)
	s.sipMu.Lock()
	if s.ua != nil {
		s.ua.Close()
		s.ua = nil
	}
	for _, c := range s.closers {
		c.Close()
	}
	s.closers = nil
	s.sipMu.Unlock()
	return err
}

// Addrs returns the bound listeners as "transport:host:port".
func (s *Server) Addrs() []string {
	s.sipMu.RLock()
	defer s.sipMu.RUnlock()
	return append([]string(nil), s.addrs...)
}

// ContactURI is the Contact of the server's dialogs.
func (s *Server) ContactURI() string {
	s.sipMu.RLock()
	defer s.sipMu.RUnlock()
	return s.contact.String()
}

// startSIP creates the user agent and serves every listen address.
func (s *Server) startSIP(ctx context.Context) error {
	log := s.log
	host, _, _ := net.SplitHostPort(s.listens[0].addr)
	if s.cfg.AdvertisedAddress != "" {
		host, _, _ = net.SplitHostPort(s.cfg.AdvertisedAddress)
	}
	st, err := siplisten.NewStack(log, host, s.tls.ClientConfig(), nil)
	if err != nil {
		return fmt.Errorf("pa: %w", err)
	}
	ua, srv, cl := st.UA, st.Server, st.Client
	srv.OnSubscribe(s.onSubscribe)
	srv.OnPublish(s.onPublish)
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
		res.AppendHeader(sip.NewHeader("Allow", "SUBSCRIBE, PUBLISH, OPTIONS"))
		res.AppendHeader(sip.NewHeader("Allow-Events", allowEvents))
		_ = tx.Respond(res)
	})
	srv.OnNoRoute(func(req *sip.Request, tx sip.ServerTransaction) {
		if req.IsAck() {
			return
		}
		res := sip.NewResponseFromRequest(req, sip.StatusMethodNotAllowed, "Method Not Allowed", nil)
		res.AppendHeader(sip.NewHeader("Allow", "SUBSCRIBE, PUBLISH, OPTIONS"))
		_ = tx.Respond(res)
	})
	var closers []io.Closer
	var addrs []string
	fail := func(err error) error {
		for _, c := range closers {
			c.Close()
		}
		ua.Close()
		return err
	}
	var lc net.ListenConfig
	port := 0
	var udpAddr *net.UDPAddr
	ports := map[string]int{}
	for _, l := range s.listens {
		addr := l.addr
		if h, p, _ := net.SplitHostPort(addr); p == "0" && port != 0 && (l.network == "udp" || l.network == "tcp") {
			// udp:127.0.0.1:0 then tcp:127.0.0.1:0: one port for both.
			addr = net.JoinHostPort(h, strconv.Itoa(port))
		}
		switch l.network {
		case "udp":
			pc, err := lc.ListenPacket(ctx, "udp", addr)
			if err != nil {
				return fail(fmt.Errorf("pa: listen udp %s: %w", addr, err))
			}
			closers = append(closers, pc)
			ua := pc.LocalAddr().(*net.UDPAddr)
			if udpAddr == nil {
				udpAddr = ua
			}
			if port == 0 {
				port = ua.Port
			}
			if _, ok := ports["UDP"]; !ok {
				ports["UDP"] = ua.Port
			}
			addrs = append(addrs, "udp:"+pc.LocalAddr().String())
			siplisten.Serve(log, "udp", addr, func() error { return srv.ServeUDP(udpio.Wrap(pc)) })
		default: // tcp, tls, ws, wss
			ln, err := lc.Listen(ctx, "tcp", addr)
			if err != nil {
				return fail(fmt.Errorf("pa: listen %s %s: %w", l.network, addr, err))
			}
			bound := ln.Addr().(*net.TCPAddr).Port
			if port == 0 {
				port = bound
			}
			tr := strings.ToUpper(l.network)
			if _, ok := ports[tr]; !ok {
				ports[tr] = bound
			}
			addrs = append(addrs, l.network+":"+ln.Addr().String())
			serve := srv.ServeTCP
			switch l.network {
			case "tls":
				ln = s.tls.Listener(ln)
				serve = srv.ServeTLS
			case "ws", "wss":
				o := wsguard.Options{Clock: s.o.Clock, OnDrop: s.wsDropped}
				serve = srv.ServeWS
				if l.network == "wss" {
					o.TLS = s.tls.ServerConfig()
					serve = srv.ServeWSS
				}
				ws := s.cfg.WebSocket
				ln = wsguard.NewListener(ln, wsguard.Limits{
					HandshakeTimeout: ws.HandshakeTimeout, MaxHandshakeBytes: 8 << 10,
					MaxPending: ws.MaxPendingHandshakes, MaxFrameSize: ws.MaxFrameSize,
					FramesPerSecond: ws.MaxFramesPerSecond,
				}, o)
			}
			closers = append(closers, ln)
			siplisten.Serve(log, l.network, addr, func() error { return serve(ln) })
		}
	}
	contact := sip.Uri{Scheme: "sip", User: "pa", Host: host, Port: port}
	if s.cfg.AdvertisedAddress != "" {
		h, p, _ := net.SplitHostPort(s.cfg.AdvertisedAddress)
		contact.Host = h
		contact.Port, _ = strconv.Atoi(p)
	}
	if n := s.listens[0].network; n != "udp" {
		contact.UriParams = sip.NewParams()
		contact.UriParams.Add("transport", n)
	}
	var laddr sip.Addr
	if udpAddr != nil && siplisten.WaitUDP(ctx, ua, udpAddr.String()) {
		laddr = sip.Addr{IP: udpAddr.IP, Port: udpAddr.Port}
	}
	s.sipMu.Lock()
	s.ua, s.cl, s.closers, s.contact, s.udpLaddr, s.addrs, s.ports = ua, cl, closers, contact, laddr, addrs, ports
	s.sipMu.Unlock()
	return nil
}

// wsDropped logs and counts a WebSocket connection closed by its guard.
func (s *Server) wsDropped(reason string, remote net.Addr, err error) {
	s.met.wsDropped.WithLabelValues(reason).Inc()
	s.log.Info("websocket connection dropped", "reason", reason, "source", remote.String(), "err", err)
}

// contactFor is the Contact given to a peer that reached the server over
// transport (sipgo's "UDP", "TCP", "TLS", "WS", "WSS"): the first
// listener's, or when the transport is another one, that transport's
// listener with ;transport= (sipMu not held).
func (s *Server) contactFor(transport string) sip.Uri {
	s.sipMu.RLock()
	defer s.sipMu.RUnlock()
	c := s.contact
	tr := strings.ToUpper(transport)
	if tr == "" || tr == strings.ToUpper(s.listens[0].network) {
		return c
	}
	p, ok := s.ports[tr]
	if !ok {
		return c
	}
	c.Port = p
	c.UriParams = sip.NewParams()
	if tr != "UDP" {
		c.UriParams.Add("transport", strings.ToLower(tr))
	}
	return c
}

// respond sends a reply, logging a failure.
func (s *Server) respond(tx sip.ServerTransaction, res *sip.Response) {
	if err := tx.Respond(res); err != nil {
		s.log.Debug("reply not sent", "status", res.StatusCode, "err", err)
	}
}

// reply answers req with code and reason and the given headers. A
// refusal is logged (the metrics count it by status): at debug level for
// the answers the protocol expects in normal operation (412, 423, 481,
// 482, 489), at info level for a malformed or refused request.
func (s *Server) reply(req *sip.Request, tx sip.ServerTransaction, code int, reason string, hdrs ...sip.Header) {
	if code >= 400 {
		lvl := slog.LevelInfo
		switch code {
		case 412, 423, 481, 482, 489:
			lvl = slog.LevelDebug
		}
		s.log.Log(context.Background(), lvl, "request refused", "method", string(req.Method), "status", code,
			"reason", reason, "source", req.Source(), "event", headerValue(req, "Event"))
	}
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	s.respond(tx, res)
}

// headerValue returns the value of the first header name, trimmed.
func headerValue(req *sip.Request, name string) string {
	if h := req.GetHeader(name); h != nil {
		return strings.TrimSpace(h.Value())
	}
	return ""
}

// expiresOf returns the Expires header in seconds, or -1 when absent or
// malformed (ok false for malformed).
func expiresOf(req *sip.Request) (int, bool) {
	v := headerValue(req, "Expires")
	if v == "" {
		return -1, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return -1, false
	}
	return n, true
}

// grant applies default, min and max expiry to a requested Expires (-1:
// none). tooShort reports a non-zero value below min_expires.
func (s *Server) grant(req int) (d time.Duration, tooShort bool) {
	if req < 0 {
		return s.cfg.DefaultExpires, false
	}
	d = time.Duration(req) * time.Second
	if d == 0 {
		return 0, false
	}
	if d < s.cfg.MinExpires {
		return 0, true
	}
	return min(d, s.cfg.MaxExpires), false
}

func (s *Server) minExpiresHeader() sip.Header {
	return sip.NewHeader("Min-Expires", strconv.Itoa(int(s.cfg.MinExpires/time.Second)))
}
