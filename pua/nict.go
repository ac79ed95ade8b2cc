package pua

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/clock"
	"github.com/puaside/puaside/internal/udpio"
	"github.com/puaside/puaside/sched"
)

// The engine's requests over UDP (PUBLISH, SUBSCRIBE, the probe's OPTIONS)
// run as the engine's own non-INVITE client transactions (RFC 3261
// §17.1.2) instead of sipgo's: sipgo arms three timers per transaction
// (A, B and, after the final response, D = 32 s whose firing starts a
// goroutine), keeps the transaction in its map for those 32 s and runs a
// state machine with channels, which cost a fifth of the process's CPU
// per mirrored REGISTER (BENCHMARKS.md). Here a transaction is one map
// entry (by top Via branch) and one entry in a timer heap shared by all of
// them, and nothing is kept after its final response: a late
// retransmission of that response matches no transaction and is dropped
// as a stray. Requests over TCP and TLS stay on sipgo.

// RFC 3261 timer values for a non-INVITE client transaction over UDP.
const (
	nictT1     = 500 * time.Millisecond // RTT estimate: first Timer E interval
	nictT2     = 4 * time.Second        // longest retransmission interval
	nictTimerF = 64 * nictT1            // no final response: timeout
)

// datagramWriter is the UDP listener socket requests are sent from
// (*udpio.Conn, or the *net.UDPConn it wraps).
type datagramWriter interface {
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

// nictLayer holds the live non-INVITE client transactions over UDP.
type nictLayer struct {
	clock clock.Clock
	sched *sched.Scheduler[*nict] // Timers E and F of every transaction

	mu      sync.Mutex
	live    map[string]*nict // top Via branch → transaction without a final response
	aborted error            // set by abort: no transaction starts any more
}

// newNICTLayer returns a layer whose Timers E and F run on c (nil: the
// wall clock; the engine's refresh clock is not used, as for every
// network deadline).
func newNICTLayer(c clock.Clock) *nictLayer {
	l := &nictLayer{clock: clock.OrReal(c), live: make(map[string]*nict)}
	l.sched = sched.New(l.clock, l.fire)
	return l
}

// nict is one client transaction. The fields up to done are fixed when it
// is created; the others are guarded by the layer's mu.
type nict struct {
	sched.Entry // Timer E, or Timer F when it comes first
	l           *nictLayer
	branch      string
	method      sip.RequestMethod
	w           datagramWriter
	dst         netip.AddrPort
	data        []byte                     // the request on the wire, for retransmissions
	deadline    time.Duration              // not zero: timerF is the caller's timeout, this long after the start
	done        func(*sip.Response, error) // called once with the outcome

	interval   time.Duration // Timer E's current interval
	timerF     time.Time     // Timer F, or the caller's deadline when that comes first
	proceeding bool          // a provisional response came: E runs at T2
	ended      bool
}

// SchedEntry is the transaction's place in the timer heap.
func (t *nict) SchedEntry() *sched.Entry { return &t.Entry }

// udpDestination returns req's destination as an address and port, and
// false when it is a host name (sipgo resolves those).
func udpDestination(req *sip.Request) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(req.Destination())
	if err != nil {
		return netip.AddrPort{}, false
	}
	if ap.Port() == 0 {
		ap = netip.AddrPortFrom(ap.Addr(), 5060)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// do is start for a caller that waits: the outcome, or ctx's error when
// ctx ends first.
func (l *nictLayer) do(ctx context.Context, w datagramWriter, dst netip.AddrPort, req *sip.Request) (*sip.Response, error) {
	fin := make(chan struct{})
	var res *sip.Response
	var err error
	t, serr := l.start(w, dst, req, 0, func(r *sip.Response, e error) {
		res, err = r, e
		close(fin)
	})
	if serr != nil {
		return nil, serr
	}
	select {
	case <-fin:
	case <-ctx.Done():
		l.end(t, nil, ctx.Err())
	}
	// done closed fin after its writes; the first outcome wins.
	<-fin
	return res, err
}

// start sends req (its Via and Laddr set by apply) to dst from w,
// retransmitting it as Timer E says, and returns at once. done is called
// exactly once with the outcome, on the goroutine that ends the
// transaction: the listener's reading goroutine for a final response, the
// timer heap's for Timer F (or timeout, when not zero and shorter:
// context.DeadlineExceeded), the one that ends the layer's transactions
// (abort), or the caller's when the first send fails. done must not wait
// for another transaction of the layer. An error returned means the
// request was not sent and done will not be called.
func (l *nictLayer) start(w datagramWriter, dst netip.AddrPort, req *sip.Request, timeout time.Duration, done func(*sip.Response, error)) (*nict, error) {
	via := req.Via()
	if via == nil {
		return nil, errors.New("request without a Via header")
	}
	branch, _ := via.Params.Get("branch")
	if !strings.HasPrefix(branch, sip.RFC3261BranchMagicCookie) || len(branch) == len(sip.RFC3261BranchMagicCookie) {
		return nil, fmt.Errorf("top Via branch %q is not an RFC 3261 one", branch)
	}
	// As sipgo's transport does: the sent-by of the listener when our
	// advertised address lacks it, and a Content-Length always.
	if via.Host == "" {
		via.Host = req.Laddr.IP.String()
	}
	if via.Port == 0 {
		via.Port = req.Laddr.Port
	}
	if req.Body() == nil {
		req.SetBody(nil)
	}
	var b bytes.Buffer
	b.Grow(len(req.Body()) + 1024) // the headers of a PUBLISH or SUBSCRIBE take well under 1 KiB
	if !writeRequest(&b, req) {
		b.Reset()
		req.StringWrite(&b)
	}
	if b.Len() > sip.UDPMTUSize-200 {
		return nil, fmt.Errorf("%d bytes: %w", b.Len(), sip.ErrUDPMTUCongestion)
	}
	t := &nict{l: l, branch: branch, method: req.Method, w: w, dst: dst, data: b.Bytes(),
		done: done, interval: nictT1}
	now := l.clock.Now()
	t.timerF = now.Add(nictTimerF)
	if timeout > 0 && timeout < nictTimerF {
		t.timerF = now.Add(timeout)
		t.deadline = timeout
	}
	first := now.Add(nictT1)
	if first.After(t.timerF) {
		first = t.timerF
	}
	l.mu.Lock()
	if l.aborted != nil {
		l.mu.Unlock()
		return nil, l.aborted
	}
	if _, dup := l.live[branch]; dup {
		l.mu.Unlock()
		return nil, fmt.Errorf("top Via branch %s already in use", branch)
	}
	l.live[branch] = t
	l.sched.Schedule(t, first)
	l.mu.Unlock()
	t.send()
	return t, nil
}

// expiry is the outcome when timerF passes.
func (t *nict) expiry() error {
	if t.deadline != 0 {
		return fmt.Errorf("no final response within %s: %w", t.deadline.Round(time.Millisecond), context.DeadlineExceeded)
	}
	return fmt.Errorf("no final response within %s (Timer F): %w", nictTimerF, sip.ErrTransactionTimeout)
}

// send (re)transmits the request; a transport error ends the transaction
// with that error (RFC 3261 §17.1.4).
func (t *nict) send() {
	if _, err := t.w.WriteToUDPAddrPort(t.data, t.dst); err != nil {
		t.l.end(t, nil, fmt.Errorf("send to %s: %w", t.dst, err))
	}
}

// end gives t its outcome unless it has one: t leaves the table and the
// heap, and its done is called. It reports whether this was t's outcome.
func (l *nictLayer) end(t *nict, res *sip.Response, err error) bool {
	l.mu.Lock()
	ok := l.endLocked(t)
	l.mu.Unlock()
	if ok {
		t.done(res, err)
	}
	return ok
}

// endLocked is end's bookkeeping; the caller calls t.done when it returns
// true. l.mu held.
func (l *nictLayer) endLocked(t *nict) bool {
	if t.ended {
		return false
	}
	t.ended = true
	if l.live[t.branch] == t {
		delete(l.live, t.branch)
	}
	l.sched.Cancel(t)
	return true
}

// abort ends every live transaction with err, and every later start
// fails with it (the engine stopping).
func (l *nictLayer) abort(err error) {
	l.mu.Lock()
	l.aborted = err
	var ended []*nict
	for _, t := range l.live {
		if l.endLocked(t) {
			ended = append(ended, t)
		}
	}
	l.mu.Unlock()
	for _, t := range ended {
		t.done(nil, err)
	}
}

// receive hands res to the live transaction of its top Via branch and
// CSeq method; it reports false when there is none (a stray: a late
// retransmission, or a response to sipgo's own transactions' peers).
func (l *nictLayer) receive(res *sip.Response) bool {
	via, cs := res.Via(), res.CSeq()
	if via == nil || cs == nil {
		return false
	}
	branch, _ := via.Params.Get("branch")
	l.mu.Lock()
	t := l.live[branch]
	if t == nil || t.method != cs.MethodName {
		l.mu.Unlock()
		return false
	}
	if res.IsProvisional() {
		t.proceeding = true
		l.mu.Unlock()
		return true
	}
	ok := l.endLocked(t)
	l.mu.Unlock()
	if ok {
		t.done(res, nil)
	}
	return true
}

// tap returns the udpio.Tap of a UDP listener: a response to a live
// transaction is parsed and handed over on the socket's reading goroutine,
// before sipgo sees it (sipgo starts a goroutine per message and looks it
// up in its own transactions first). A 2xx to a PUBLISH in its plain form
// is read by leanPublishResponse, any other response by sipgo's parser.
// Everything else goes on to sipgo, a response without a live transaction
// too (a stray, logged there). Each listener gets its own tap: the parser
// is not shared.
func (l *nictLayer) tap() udpio.Tap {
	p := sip.NewParser()
	return func(d []byte, from netip.AddrPort) bool {
		if !bytes.HasPrefix(d, []byte("SIP/2.0 ")) {
			return false
		}
		res, ok := leanPublishResponse(d)
		if !ok {
			msg, err := p.ParseSIP(d)
			if err != nil {
				return false // sipgo logs it
			}
			if res, ok = msg.(*sip.Response); !ok {
				return false
			}
		}
		res.SetTransport("UDP")
		res.SetSource(from.String())
		return l.receive(res)
	}
}

// fire runs the due Timers E (retransmit, then wait twice as long up to
// T2, or T2 once proceeding) and F (timeout), in the heap's goroutine.
func (l *nictLayer) fire(now time.Time, due []*nict) {
	for _, t := range due {
		l.mu.Lock()
		if t.ended {
			l.mu.Unlock()
			continue
		}
		if !now.Before(t.timerF) {
			ok := l.endLocked(t)
			l.mu.Unlock()
			if ok {
				t.done(nil, t.expiry())
			}
			continue
		}
		if t.proceeding {
			t.interval = nictT2
		} else {
			t.interval = min(2*t.interval, nictT2)
		}
		next := now.Add(t.interval)
		if next.After(t.timerF) {
			next = t.timerF
		}
		l.sched.Schedule(t, next)
		l.mu.Unlock()
		t.send()
	}
}
