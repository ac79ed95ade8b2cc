package pua

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/internal/siplisten"
	"github.com/puaside/puaside/resolve"
)

// failedFor is how long a target that failed keeps its place at the end
// of the list, so that following requests try the next one first.
const failedFor = 30 * time.Second

// failedTargets remembers the targets that failed recently.
type failedTargets struct {
	mu sync.Mutex
	at map[string]time.Time // "TRANSPORT addr" → when it failed
}

func (f *failedTargets) mark(t resolve.Target, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.at == nil {
		f.at = make(map[string]time.Time)
	}
	if len(f.at) > 1024 {
		clear(f.at)
	}
	f.at[t.Transport+" "+t.Addr] = now
}

func (f *failedTargets) ok(t resolve.Target) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.at, t.Transport+" "+t.Addr)
}

// order moves the targets that failed within failedFor to the end,
// keeping the order otherwise.
func (f *failedTargets) order(ts []resolve.Target, now time.Time) []resolve.Target {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.at) == 0 || len(ts) < 2 {
		return ts
	}
	var good, bad []resolve.Target
	for _, t := range ts {
		if at, ok := f.at[t.Transport+" "+t.Addr]; ok && now.Sub(at) < failedFor {
			bad = append(bad, t)
		} else {
			good = append(good, t)
		}
	}
	return append(good, bad...)
}

// targets returns where req goes, in the order to try: the next hop is hop
// if set, else the top Route, else the Request-URI; a host name is
// resolved as RFC 3263 says, within ctx and request_timeout. A sips: next
// hop or Request-URI allows TLS only. The targets of a hop whose host is an
// address are built once (hopTargets).
func (st *sipStack) targets(ctx context.Context, req *sip.Request, hop string) ([]resolve.Target, error) {
	var key hopKey
	if hop != "" {
		key = hopKeyOf(req, hop)
		if ts, ok := st.hops.get(key); ok {
			return st.failed.order(ts, time.Now()), nil
		}
	}
	var u sip.Uri
	switch {
	case hop != "":
		if err := sip.ParseUri(hop, &u); err != nil || u.Host == "" {
			return nil, fmt.Errorf("pua: next hop %q: not a SIP URI", hop)
		}
	case req.Route() != nil:
		u = req.Route().Address
	default:
		u = req.Recipient
	}
	secure := strings.EqualFold(u.Scheme, "sips") || strings.EqualFold(req.Recipient.Scheme, "sips")
	tr, _ := u.UriParams.Get("transport")
	if tr == "" {
		tr, _ = req.Recipient.UriParams.Get("transport")
	}
	tr = strings.ToUpper(tr)
	if secure && tr == "TCP" {
		tr = "TLS" // sips:...;transport=tcp is TLS over TCP (RFC 3261 §26.2)
	}
	if tr != "" && tr != "UDP" && tr != "TCP" && tr != "TLS" {
		return nil, fmt.Errorf("pua: %s %s: transport %s not supported", req.Method, u.String(), tr)
	}
	if secure && tr != "" && tr != "TLS" {
		return nil, fmt.Errorf("pua: %s %s: a sips: URI needs TLS, not %s", req.Method, u.String(), tr)
	}
	n := resolve.Name{Host: u.Host, Port: u.Port, Transport: tr, Secure: secure}
	address := net.ParseIP(strings.Trim(u.Host, "[]")) != nil
	var ts []resolve.Target
	var err error
	if st.res != nil {
		if !address {
			// A name: the lookup is bounded by request_timeout (an
			// address is answered at once, without a timer).
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, st.e.cfg.RequestTimeout)
			defer cancel()
		}
		ts, err = st.res.Lookup(ctx, n)
	}
	if st.res == nil || (err != nil && !address) {
		if err != nil {
			st.e.log.Debug("RFC 3263 lookup failed, the system resolves the name", "host", u.Host, "err", err)
		}
		// The system's resolver (A/AAAA, /etc/hosts), through sipgo.
		if tr == "" {
			tr = "UDP"
			if secure {
				tr = "TLS"
			}
		}
		port := u.Port
		if port == 0 {
			port = 5060
			if tr == "TLS" {
				port = 5061
			}
		}
		ts, err = []resolve.Target{{Transport: tr, Addr: net.JoinHostPort(strings.Trim(u.Host, "[]"), strconv.Itoa(port)), Host: u.Host}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pua: %s %s: %w", req.Method, u.String(), err)
	}
	if hop != "" && address {
		st.hops.put(key, ts)
	}
	return st.failed.order(ts, time.Now()), nil
}

// hopKey is what the targets of a next hop given as a string depend on:
// the hop, and the scheme and transport parameter of the Request-URI.
type hopKey struct {
	hop, transport string
	sips           bool
}

// hopKeyOf is the hopKey of req sent to hop.
func hopKeyOf(req *sip.Request, hop string) hopKey {
	tr, _ := req.Recipient.UriParams.Get("transport")
	return hopKey{hop: hop, transport: tr, sips: strings.EqualFold(req.Recipient.Scheme, "sips")}
}

// maxHops bounds hopTargets: next hops are the configured server and
// proxies, and the few a record names.
const maxHops = 64

// hopTargets keeps the targets of next hops whose host is an address
// (no lookup, so they never change), so that a request to the server is
// not preceded by parsing its URI and building its target each time. The
// slices are shared and never modified (failedTargets.order builds new
// ones).
type hopTargets struct {
	mu sync.RWMutex
	m  map[hopKey][]resolve.Target
}

func (h *hopTargets) get(k hopKey) ([]resolve.Target, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	ts, ok := h.m[k]
	return ts, ok
}

func (h *hopTargets) put(k hopKey, ts []resolve.Target) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = make(map[hopKey][]resolve.Target)
	}
	if len(h.m) < maxHops {
		h.m[k] = ts
	}
}

// apply sends req to t: a fresh Via (our advertised address, never a
// wildcard; new branch), transport (TCP when too large for UDP) and
// destination.
func (st *sipStack) apply(req *sip.Request, t resolve.Target) {
	tr := t.Transport
	if tr == "UDP" && siplisten.TooLargeForUDP(req) {
		tr = "TCP"
	}
	if tr == "TLS" {
		if h, _, err := net.SplitHostPort(t.Addr); err == nil {
			st.tls.RememberName(h, t.Host)
		}
	}
	st.mu.RLock()
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: tr,
		Host: st.host, Port: st.ports[tr], Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranchN(16))
	req.Laddr = sip.Addr{}
	if tr == "UDP" && st.udpLaddr.IP != nil {
		st.udpLaddr.Copy(&req.Laddr)
	}
	st.mu.RUnlock()
	req.RemoveHeader("Via")
	req.PrependHeader(via)
	req.SetTransport(tr)
	req.SetDestination(t.Addr)
}

// finish points req at the first target of its next hop.
func (st *sipStack) finish(req *sip.Request, hop string) error {
	ctx, cancel := context.WithTimeout(st.e.stopCtx, st.e.cfg.RequestTimeout)
	defer cancel()
	ts, err := st.targets(ctx, req, hop)
	if err != nil {
		return err
	}
	st.apply(req, ts[0])
	return nil
}

// send runs req's transaction with the targets of its next hop in turn:
// a timeout, a transport error or a 503 moves on to the next target
// (RFC 3263 §4.3), which later requests then try first for a while.
func (st *sipStack) send(req *sip.Request, hop, event string) txOutcome {
	ch := make(chan txOutcome, 1)
	st.sendAsync(req, hop, event, func(out txOutcome) { ch <- out })
	return <-ch
}

// sendAsync is send without waiting: done gets the outcome once, on the
// goroutine that ends the last transaction (see startOwn), or on the
// caller's when no target is found. The targets are resolved in the
// caller's goroutine.
func (st *sipStack) sendAsync(req *sip.Request, hop, event string, done func(txOutcome)) {
	ts, err := st.targets(st.e.stopCtx, req, hop)
	if err != nil {
		done(txOutcome{err: err})
		return
	}
	j := &sendJob{st: st, req: req, event: event, ts: ts, done: done}
	j.attempt()
}

// sendJob is one request tried on its targets in turn.
type sendJob struct {
	st    *sipStack
	req   *sip.Request
	event string
	ts    []resolve.Target
	i     int // the target being tried
	done  func(txOutcome)
}

// attempt sends the request to the current target: as the engine's own
// transaction when it can, otherwise through sipgo on a goroutine.
func (j *sendJob) attempt() {
	j.st.apply(j.req, j.ts[j.i])
	if !j.st.startOwn(j.req, j.event, j.finished) {
		go func() { j.finished(j.st.do(j.req, j.event)) }()
	}
}

// finished takes the current target's outcome: done, or the next target
// when this one failed over.
func (j *sendJob) finished(out txOutcome) {
	st, t := j.st, j.ts[j.i]
	if !failsOver(out) || st.e.stopCtx.Err() != nil {
		if out.err == nil && out.res != nil && out.res.StatusCode != 503 {
			st.failed.ok(t)
		}
		j.done(out)
		return
	}
	st.failed.mark(t, time.Now())
	if j.i+1 >= len(j.ts) {
		j.done(out)
		return
	}
	st.e.log.Debug("target failed, trying the next one", "method", j.req.Method, "target", t.Transport+" "+t.Addr,
		"next", j.ts[j.i+1].Transport+" "+j.ts[j.i+1].Addr, "err", out.err)
	j.i++
	j.attempt()
}

// failsOver reports whether another target should be tried after out.
func failsOver(out txOutcome) bool {
	if out.err != nil {
		return !errors.Is(out.err, context.Canceled)
	}
	return out.res != nil && out.res.StatusCode == 503
}
