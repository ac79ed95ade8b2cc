package pua

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/internal/siplisten"
	"github.com/puaside/puaside/internal/siptls"
	"github.com/puaside/puaside/internal/udpio"
	"github.com/puaside/puaside/metrics"
	"github.com/puaside/puaside/resolve"
)

// sipStack is the engine's sipgo user agent: a Server on each listen
// address (NOTIFY in; everything else 405) and a Client for our requests
// over TCP and TLS. Requests over UDP run as the engine's own client
// transactions (nict.go) on the UDP listener's socket.
//
// No sip.* package variable is changed: sipgo's loggers are replaced through
// the UA options, and oversized requests are moved to TCP instead of raising
// sip.UDPMTUSize.
type sipStack struct {
	e       *Engine
	listens []listenAddr
	tls     *siptls.Files
	res     *resolve.Resolver // nil: names are resolved by sipgo (system resolver)
	failed  failedTargets
	hops    hopTargets

	mu      sync.RWMutex
	ua      *sipgo.UserAgent
	srv     *sipgo.Server
	cl      *sipgo.Client
	closers []io.Closer
	host    string
	ports   map[string]int // "UDP"/"TCP"/"TLS" → advertised port
	contact string
	// udpLaddr is the first UDP listener's socket: UDP requests are sent
	// from it (symmetric signalling, one socket), not from an ephemeral
	// port. Zero when it is not known to the transport layer.
	udpLaddr sip.Addr
	// udpOut is that socket as sipgo serves it (wrapped by udpio): the
	// engine's own UDP transactions write to it. Nil with udpLaddr zero.
	udpOut datagramWriter
	// txs are the engine's own transactions over UDP; their responses come
	// as the ones matching no sipgo transaction.
	txs *nictLayer
}

func newSIPStack(e *Engine) (*sipStack, error) {
	st := &sipStack{e: e, ports: make(map[string]int), txs: newNICTLayer(nil)}
	for _, l := range e.cfg.Listen {
		la, err := parseListen(l)
		if err != nil {
			return nil, err
		}
		st.listens = append(st.listens, la)
	}
	tf, err := siptls.NewFiles(e.cfg.TLS)
	if err != nil {
		return nil, err
	}
	st.tls = tf
	if r, err := resolve.New(resolve.Config{Server: e.cfg.DNSServer}); err == nil {
		st.res = r
	} else {
		e.log.Warn("no DNS server for RFC 3263 lookups: names are resolved by the system (A/AAAA only)", "err", err)
	}
	// Until Start binds, the contact is the configured address.
	host, port := st.advertised()
	st.setAddress(host, port, map[string]int{})
	return st, nil
}

// advertised returns the configured advertised host and port.
func (st *sipStack) advertised() (string, int) {
	addr := st.e.cfg.AdvertisedAddress
	if addr == "" {
		addr = st.listens[0].addr
	}
	h, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	return h, port
}

// setAddress fixes Via/Contact host and ports.
func (st *sipStack) setAddress(host string, port int, bound map[string]int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.host = host
	first := strings.ToUpper(st.listens[0].network)
	for _, tr := range []string{"UDP", "TCP", "TLS"} {
		p := port
		if st.e.cfg.AdvertisedAddress == "" {
			if b, ok := bound[tr]; ok {
				p = b
			} else if b, ok := bound[first]; ok {
				p = b
			}
		}
		st.ports[tr] = p
	}
	c := "sip:puaside@" + net.JoinHostPort(host, strconv.Itoa(st.ports[first]))
	if first != "UDP" {
		c += ";transport=" + strings.ToLower(first)
	}
	st.contact = c
}

func (st *sipStack) contactURI() string {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return st.contact
}

// start creates the UA and serves every listen address.
func (st *sipStack) start(ctx context.Context) error {
	log := st.e.log.With("component", "sip")
	host, port := st.advertised()
	txs := st.txs
	stack, err := siplisten.NewStack(log, host, st.tls.ClientConfig(), func(r *sip.Response) {
		if txs.receive(r) {
			return
		}
		log.Debug("stray response (late retransmission)", "status", r.StatusCode, "call_id", callID(r))
	})
	if err != nil {
		return fmt.Errorf("pua: %w", err)
	}
	ua, srv, cl := stack.UA, stack.Server, stack.Client
	srv.OnNotify(st.e.onNotify)
	srv.OnNoRoute(func(req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, sip.StatusMethodNotAllowed, "Method Not Allowed", nil)
		res.AppendHeader(sip.NewHeader("Allow", "NOTIFY"))
		if err := tx.Respond(res); err != nil {
			log.Debug("reply 405", "err", err)
		}
	})
	bound := map[string]int{}
	var udpListener string
	var udpAddr *net.UDPAddr
	var udpOut datagramWriter
	var closers []io.Closer
	fail := func(err error) error {
		for _, c := range closers {
			c.Close()
		}
		ua.Close()
		return err
	}
	var lc net.ListenConfig
	for _, l := range st.listens {
		tr := strings.ToUpper(l.network)
		switch l.network {
		case "udp":
			pc, err := lc.ListenPacket(ctx, "udp", l.addr)
			if err != nil {
				return fail(fmt.Errorf("pua: listen udp %s: %w", l.addr, err))
			}
			closers = append(closers, pc)
			if n := st.e.cfg.UDPReadBuffer; n > 0 {
				if uc, ok := pc.(*net.UDPConn); ok {
					if err := uc.SetReadBuffer(n); err != nil {
						log.Warn("udp receive buffer not set", "addr", l.addr, "bytes", n, "err", err)
					}
				}
			}
			wrapped := udpio.Wrap(pc)
			if c, ok := wrapped.(*udpio.Conn); ok {
				c.SetTap(st.txs.tap())
			}
			if _, ok := bound[tr]; !ok {
				udpAddr = pc.LocalAddr().(*net.UDPAddr)
				udpListener = pc.LocalAddr().String()
				bound[tr] = udpAddr.Port
				udpOut, _ = wrapped.(datagramWriter)
			}
			siplisten.Serve(log, "udp", l.addr, func() error { return srv.ServeUDP(wrapped) })
		case "tcp", "tls":
			ln, err := lc.Listen(ctx, "tcp", l.addr)
			if err != nil {
				return fail(fmt.Errorf("pua: listen %s %s: %w", l.network, l.addr, err))
			}
			closers = append(closers, ln)
			if _, ok := bound[tr]; !ok {
				bound[tr] = ln.Addr().(*net.TCPAddr).Port
			}
			serve := srv.ServeTCP
			if l.network == "tls" {
				ln = st.tls.Listener(ln)
				serve = srv.ServeTLS
			}
			siplisten.Serve(log, l.network, l.addr, func() error { return serve(ln) })
		}
	}
	st.setAddress(host, port, bound)
	var laddr sip.Addr
	if udpAddr != nil {
		if siplisten.WaitUDP(ctx, ua, udpListener) {
			laddr = sip.Addr{IP: udpAddr.IP, Port: udpAddr.Port}
		} else {
			log.Warn("UDP listener not ready: requests go out from an ephemeral port", "addr", udpListener)
			udpOut = nil
		}
	}
	st.mu.Lock()
	st.ua, st.srv, st.cl, st.closers, st.udpLaddr, st.udpOut = ua, srv, cl, closers, laddr, udpOut
	st.mu.Unlock()
	return nil
}

// close shuts the listeners and the UA.
func (st *sipStack) close() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.udpOut = nil
	if st.ua != nil {
		st.ua.Close() // closes the served listeners too
		st.ua = nil
	}
	for _, c := range st.closers {
		c.Close()
	}
	st.closers = nil
}

// txOutcome is the final reply (or error) of one transaction.
type txOutcome struct {
	res     *sip.Response
	err     error
	cseq    uint32 // CSeq finally used (digest auth increments it)
	timeout bool
}

// do runs one client transaction with request_timeout, answering one
// digest challenge when credentials are configured.
func (st *sipStack) do(req *sip.Request, event string) txOutcome {
	return st.doCtx(st.e.stopCtx, req, event)
}

// doCtx is do within ctx.
func (st *sipStack) doCtx(parent context.Context, req *sip.Request, event string) txOutcome {
	e := st.e
	st.mu.RLock()
	cl := st.cl
	st.mu.RUnlock()
	if cl == nil {
		return txOutcome{err: fmt.Errorf("pua: %s: engine not started", req.Method)}
	}
	ctx, cancel := context.WithTimeout(parent, e.cfg.RequestTimeout)
	defer cancel()
	start := time.Now()
	e.m.InFlight(1)
	res, err := st.roundTrip(ctx, cl, req)
	if err == nil && st.challenged(res) {
		res, err = st.digest(ctx, cl, req, res)
	}
	return st.outcome(req, event, start, res, err)
}

// challenged reports whether res is a digest challenge the engine answers.
func (st *sipStack) challenged(res *sip.Response) bool {
	return (res.StatusCode == 401 || res.StatusCode == 407) && st.e.cfg.AuthUsername != ""
}

// digest answers res, a challenge to req, with the configured credentials
// (a sipgo transaction).
func (st *sipStack) digest(ctx context.Context, cl *sipgo.Client, req *sip.Request, res *sip.Response) (*sip.Response, error) {
	return cl.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: st.e.cfg.AuthUsername, Password: st.e.cfg.AuthPassword})
}

// outcome ends one request's transaction (started at start, counted in
// flight): its metrics and its txOutcome.
func (st *sipStack) outcome(req *sip.Request, event string, start time.Time, res *sip.Response, err error) txOutcome {
	e := st.e
	method := string(req.Method)
	e.m.InFlight(-1)
	out := txOutcome{res: res, err: err}
	if cs := req.CSeq(); cs != nil {
		out.cseq = cs.SeqNo
	}
	status := 0
	if err != nil {
		out.res = nil
		out.timeout = errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sip.ErrTransactionTimeout)
		out.err = fmt.Errorf("pua: %s %s: %w", method, req.Recipient.String(), err)
	} else {
		status = res.StatusCode
	}
	e.m.Request(method, event, metrics.StatusLabel(status, out.timeout), time.Since(start))
	return out
}

// ownUDP returns the socket and address req goes to when the engine's own
// transactions carry it: over UDP from the listener socket to an address.
func (st *sipStack) ownUDP(req *sip.Request) (datagramWriter, netip.AddrPort, bool) {
	st.mu.RLock()
	w := st.udpOut
	st.mu.RUnlock()
	if w != nil && req.Laddr.IP != nil && strings.EqualFold(req.Transport(), "UDP") {
		if dst, ok := udpDestination(req); ok {
			return w, dst, true
		}
	}
	return nil, netip.AddrPort{}, false
}

// startOwn runs req as one of the engine's own UDP transactions without
// waiting for it: done gets the outcome (as doCtx's) on the goroutine
// that ends it. It reports false, calling nothing, when req is not one
// for them (ownUDP); a digest challenge is answered on a goroutine of
// its own (a sipgo transaction).
func (st *sipStack) startOwn(req *sip.Request, event string, done func(txOutcome)) bool {
	w, dst, ok := st.ownUDP(req)
	if !ok {
		return false
	}
	e := st.e
	start := time.Now()
	e.m.InFlight(1)
	_, err := st.txs.start(w, dst, req, e.cfg.RequestTimeout, func(res *sip.Response, err error) {
		if err == nil && st.challenged(res) {
			go func() {
				st.mu.RLock()
				cl := st.cl
				st.mu.RUnlock()
				if cl == nil {
					done(st.outcome(req, event, start, nil, fmt.Errorf("engine stopped")))
					return
				}
				ctx, cancel := context.WithTimeout(e.stopCtx, e.cfg.RequestTimeout-time.Since(start))
				defer cancel()
				res, err := st.digest(ctx, cl, req, res)
				done(st.outcome(req, event, start, res, err))
			}()
			return
		}
		done(st.outcome(req, event, start, res, err))
	})
	if err != nil {
		done(st.outcome(req, event, start, nil, err))
	}
	return true
}

// roundTrip runs req's client transaction and waits for its final
// response: the engine's own (nict.go) when req goes over UDP from the
// listener socket to an address, sipgo's otherwise (TCP, TLS, a host name
// for the system to resolve, no UDP listener ready).
func (st *sipStack) roundTrip(ctx context.Context, cl *sipgo.Client, req *sip.Request) (*sip.Response, error) {
	if w, dst, ok := st.ownUDP(req); ok {
		return st.txs.do(ctx, w, dst, req)
	}
	return cl.Do(ctx, req)
}

// result turns a transaction outcome into a Result. Expires is the granted
// Expires of a 2xx, or the Min-Expires of a 423.
func (o txOutcome) result() Result {
	if o.res == nil {
		return Result{Err: o.err}
	}
	// The texts are kept in the publication's record: copies, not
	// substrings of the datagram, which they would keep alive.
	res := Result{Status: o.res.StatusCode, Reason: ownText(o.res.Reason)}
	if h := o.res.GetHeader("SIP-ETag"); h != nil {
		res.ETag = strings.Clone(strings.TrimSpace(h.Value()))
	}
	name := "Expires"
	if res.Status == 423 {
		name = "Min-Expires"
	}
	if h := o.res.GetHeader(name); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n >= 0 {
			res.Expires = time.Duration(n) * time.Second
		}
	}
	if res.Status == 503 {
		if h := o.res.GetHeader("Retry-After"); h != nil {
			res.RetryAfter = retryAfter(h.Value())
		}
	}
	return res
}

// ownText returns a copy of s that shares no memory with s: the common
// reason phrases as constants, anything else cloned.
func ownText(s string) string {
	switch s {
	case "OK":
		return "OK"
	case "Accepted":
		return "Accepted"
	}
	return strings.Clone(s)
}

// retryAfter parses a Retry-After value in its seconds form
// ("120", "120 (maintenance);duration=60"); 0 when it is not one.
func retryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	i := 0
	for i < len(v) && i < 10 && v[i] >= '0' && v[i] <= '9' {
		i++
	}
	if i == 0 || (i < len(v) && v[i] != ' ' && v[i] != '\t' && v[i] != '(' && v[i] != ';') {
		return 0
	}
	n, err := strconv.Atoi(v[:i])
	if err != nil {
		return 0
	}
	return time.Duration(n) * time.Second
}

// callID returns a message's Call-ID or "".
func callID(m interface{ CallID() *sip.CallIDHeader }) string {
	if c := m.CallID(); c != nil {
		return c.Value()
	}
	return ""
}

// headerValue returns a header's value, trying the compact form too.
func headerValue(m interface{ GetHeader(string) sip.Header }, names ...string) string {
	for _, n := range names {
		if h := m.GetHeader(n); h != nil {
			return strings.TrimSpace(h.Value())
		}
	}
	return ""
}
