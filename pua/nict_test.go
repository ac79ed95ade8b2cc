package pua

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/clock/clocktest"
)

// udpPeer is a bare UDP endpoint on 127.0.0.1 that hands every request it
// reads to the test, which answers (or not) as it likes: no transaction
// layer absorbs retransmissions.
type udpPeer struct {
	t    *testing.T
	pc   net.PacketConn
	reqs chan peerReq
}

// peerReq is one datagram the peer read.
type peerReq struct {
	req  *sip.Request
	raw  []byte
	from net.Addr
}

func newUDPPeer(t *testing.T) *udpPeer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &udpPeer{t: t, pc: pc, reqs: make(chan peerReq, 256)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			raw := bytes.Clone(buf[:n])
			m, err := sip.ParseMessage(raw)
			if err != nil {
				continue
			}
			if req, ok := m.(*sip.Request); ok {
				p.reqs <- peerReq{req: req, raw: raw, from: from}
			}
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return p
}

func (p *udpPeer) uri() string { return "sip:" + p.pc.LocalAddr().String() }

// next returns the next request read, failing the test after a bound.
func (p *udpPeer) next() peerReq {
	p.t.Helper()
	select {
	case r := <-p.reqs:
		return r
	case <-time.After(10 * time.Second):
		p.t.Fatal("no request reached the peer")
		return peerReq{}
	}
}

// reply sends a response to r with code; edit may change it first.
func (p *udpPeer) reply(r peerReq, code int, edit func(*sip.Response)) {
	p.t.Helper()
	res := sip.NewResponseFromRequest(r.req, code, fmt.Sprintf("Status %d", code), nil)
	if edit != nil {
		edit(res)
	}
	if _, err := p.pc.WriteTo([]byte(res.String()), r.from); err != nil {
		p.t.Fatal(err)
	}
}

// lockedBuffer is a log sink safe for concurrent writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

// nictEngine starts an engine with a UDP listener only, its own
// transactions' timers on clk, sending to peer; mod may change the
// configuration. The engine logs at debug level into the returned buffer.
func nictEngine(t *testing.T, clk *clocktest.Fake, mod func(*Config)) (*Engine, *lockedBuffer) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Listen = []string{"udp:127.0.0.1:0"}
	cfg.ServerAddress = "sip:127.0.0.1:9"
	cfg.RequestTimeout = 20 * time.Second
	cfg.MaxOutstanding = 8
	if mod != nil {
		mod(&cfg)
	}
	logs := &lockedBuffer{}
	e, err := New(cfg, Options{Clock: newFakeClock(),
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	e.sip.txs = newNICTLayer(clk)
	startStopAtEnd(t, e)
	return e, logs
}

// nictSend sends a PUBLISH with Call-ID cid to hop through the engine's
// transaction path in its own goroutine; the outcome comes on the channel.
func nictSend(t *testing.T, e *Engine, hop, cid string) <-chan txOutcome {
	t.Helper()
	uri := sip.Uri{Scheme: "sip", User: "alice", Host: "example.com"}
	req := newRequest(sip.PUBLISH, uri, uri, uri, sip.GenerateTagN(16), "", cid, 1)
	req.AppendHeader(sip.NewHeader("Event", "presence"))
	req.SetBody(nil)
	if err := e.sip.finish(req, hop); err != nil {
		t.Fatal(err)
	}
	out := make(chan txOutcome, 1)
	if !e.sip.startOwn(req, "presence", func(o txOutcome) { out <- o }) {
		t.Fatalf("%s: not one of the engine's own transactions", hop)
	}
	return out
}

// outcome waits, bounded, for a transaction's outcome.
func outcome(t *testing.T, ch <-chan txOutcome) txOutcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(10 * time.Second):
		t.Fatal("no transaction outcome")
		return txOutcome{}
	}
}

// branchOf returns a request's top Via branch.
func branchOf(r *sip.Request) string {
	b, _ := r.Via().Params.Get("branch")
	return b
}

// dueIn returns how long until the live transaction of branch fires.
func dueIn(t *testing.T, e *Engine, clk *clocktest.Fake, branch string) time.Duration {
	t.Helper()
	l := e.sip.txs
	l.mu.Lock()
	tx := l.live[branch]
	l.mu.Unlock()
	if tx == nil {
		t.Fatalf("no live transaction %s", branch)
	}
	at, ok := l.sched.Due(tx)
	if !ok {
		t.Fatalf("transaction %s not scheduled", branch)
	}
	return at.Sub(clk.Now())
}

// checkIdle fails unless no transaction is live or scheduled.
func checkIdle(t *testing.T, e *Engine) {
	t.Helper()
	l := e.sip.txs
	l.mu.Lock()
	n := len(l.live)
	l.mu.Unlock()
	if n != 0 || l.sched.Len() != 0 {
		t.Fatalf("%d live transactions, %d scheduled after the outcome", n, l.sched.Len())
	}
}

// A peer that drops the first two requests gets retransmissions with the
// same branch and bytes, at T1 then 2·T1; its answer to the third is the
// one outcome.
func TestNICTRetransmitsUntilAnswered(t *testing.T) {
	peer := newUDPPeer(t)
	clk := clocktest.New(time.Unix(1_700_000_000, 0))
	e, _ := nictEngine(t, clk, nil)
	ch := nictSend(t, e, peer.uri(), "drop-two")
	first := peer.next()
	br := branchOf(first.req)
	if got := first.from.String(); got != e.sip.udpLaddr.String() {
		t.Fatalf("sent from %s, want the listener %s", got, e.sip.udpLaddr.String())
	}
	for i, want := range []time.Duration{nictT1, 2 * nictT1} {
		if d := dueIn(t, e, clk, br); d != want {
			t.Fatalf("retransmission %d due in %s, want %s", i+1, d, want)
		}
		clk.Advance(want)
		again := peer.next()
		if branchOf(again.req) != br || !bytes.Equal(again.raw, first.raw) {
			t.Fatalf("retransmission %d differs:\n%s\nfirst:\n%s", i+1, again.raw, first.raw)
		}
	}
	if d := dueIn(t, e, clk, br); d != min(4*nictT1, nictT2) {
		t.Fatalf("third retransmission due in %s", d)
	}
	peer.reply(first, 200, nil)
	o := outcome(t, ch)
	if o.err != nil || o.res == nil || o.res.StatusCode != 200 {
		t.Fatalf("outcome %+v", o)
	}
	checkIdle(t, e)
	select {
	case r := <-peer.reqs:
		t.Fatalf("request after the outcome: %s", r.raw)
	default:
	}
}

// After a provisional response the transaction waits for the final one,
// retransmitting every T2.
func TestNICTProvisionalThenFinal(t *testing.T) {
	peer := newUDPPeer(t)
	clk := clocktest.New(time.Unix(1_700_000_000, 0))
	e, _ := nictEngine(t, clk, nil)
	ch := nictSend(t, e, peer.uri(), "trying")
	r := peer.next()
	br := branchOf(r.req)
	peer.reply(r, 100, nil)
	waitFor(t, "proceeding", func() bool {
		e.sip.txs.mu.Lock()
		defer e.sip.txs.mu.Unlock()
		tx := e.sip.txs.live[br]
		return tx != nil && tx.proceeding
	})
	clk.Advance(nictT1)
	peer.next()
	for range 2 {
		if d := dueIn(t, e, clk, br); d != nictT2 {
			t.Fatalf("retransmission due in %s while proceeding, want T2", d)
		}
		clk.Advance(nictT2)
		if got := branchOf(peer.next().req); got != br {
			t.Fatalf("retransmission branch %s, want %s", got, br)
		}
	}
	select {
	case o := <-ch:
		t.Fatalf("outcome %+v before the final response", o)
	default:
	}
	peer.reply(r, 202, nil)
	if o := outcome(t, ch); o.err != nil || o.res.StatusCode != 202 {
		t.Fatalf("outcome %+v", o)
	}
	checkIdle(t, e)
}

// Timer F (64·T1, on the transactions' clock) or request_timeout,
// whichever comes first, gives the timeout outcome.
func TestNICTTimeout(t *testing.T) {
	t.Run("timer F", func(t *testing.T) {
		peer := newUDPPeer(t)
		clk := clocktest.New(time.Unix(1_700_000_000, 0))
		e, _ := nictEngine(t, clk, func(c *Config) { c.RequestTimeout = time.Minute })
		ch := nictSend(t, e, peer.uri(), "timer-f")
		br := branchOf(peer.next().req)
		sent, elapsed := 1, time.Duration(0)
		for range 20 {
			d := dueIn(t, e, clk, br)
			clk.Advance(d)
			elapsed += d
			if elapsed >= nictTimerF {
				break
			}
			peer.next()
			sent++
		}
		o := outcome(t, ch)
		if !o.timeout || !errors.Is(o.err, sip.ErrTransactionTimeout) || o.res != nil {
			t.Fatalf("outcome %+v, want a timeout", o)
		}
		// 0.5, 1.5, 3.5, 7.5, then every 4 s up to 31.5: ten retransmissions.
		if elapsed != nictTimerF || sent != 11 {
			t.Fatalf("timed out after %s with %d requests sent, want %s and 11", elapsed, sent, nictTimerF)
		}
		checkIdle(t, e)
	})
	t.Run("request_timeout", func(t *testing.T) {
		peer := newUDPPeer(t)
		clk := clocktest.New(time.Unix(1_700_000_000, 0))
		e, _ := nictEngine(t, clk, func(c *Config) { c.RequestTimeout = 200 * time.Millisecond })
		ch := nictSend(t, e, peer.uri(), "request-timeout")
		br := branchOf(peer.next().req)
		if d := dueIn(t, e, clk, br); d != 200*time.Millisecond {
			t.Fatalf("first timer in %s, want request_timeout 200ms (before T1)", d)
		}
		clk.Advance(200 * time.Millisecond)
		o := outcome(t, ch)
		if !o.timeout || !errors.Is(o.err, context.DeadlineExceeded) {
			t.Fatalf("outcome %+v, want a timeout", o)
		}
		checkIdle(t, e)
	})
}

// Concurrent transactions to one peer, answered in reverse order with a
// status each, each get their own answer.
func TestNICTConcurrentMatched(t *testing.T) {
	peer := newUDPPeer(t)
	clk := clocktest.New(time.Unix(1_700_000_000, 0))
	e, _ := nictEngine(t, clk, nil)
	const n = 8
	chs := make(map[string]<-chan txOutcome, n)
	for i := range n {
		cid := fmt.Sprintf("concurrent-%d", i)
		chs[cid] = nictSend(t, e, peer.uri(), cid)
	}
	var got []peerReq
	for range n {
		got = append(got, peer.next())
	}
	want := map[string]int{}
	for i := n - 1; i >= 0; i-- {
		code := 200 + i
		want[got[i].req.CallID().Value()] = code
		peer.reply(got[i], code, nil)
	}
	for cid, ch := range chs {
		o := outcome(t, ch)
		if o.err != nil || o.res.StatusCode != want[cid] || o.res.CallID().Value() != cid {
			t.Fatalf("%s: outcome %+v, want status %d", cid, o, want[cid])
		}
	}
	checkIdle(t, e)
}

// A response of another CSeq method does not match; after the final
// response, repeated or different finals are strays.
func TestNICTDuplicateFinalIgnored(t *testing.T) {
	peer := newUDPPeer(t)
	clk := clocktest.New(time.Unix(1_700_000_000, 0))
	e, logs := nictEngine(t, clk, nil)
	ch := nictSend(t, e, peer.uri(), "dups")
	r := peer.next()
	peer.reply(r, 486, func(res *sip.Response) { res.CSeq().MethodName = sip.OPTIONS })
	waitFor(t, "other method stray", func() bool { return logs.count("stray response") == 1 && logs.count("status=486") == 1 })
	peer.reply(r, 200, nil)
	if o := outcome(t, ch); o.err != nil || o.res.StatusCode != 200 {
		t.Fatalf("outcome %+v", o)
	}
	peer.reply(r, 200, nil)
	peer.reply(r, 500, nil)
	waitFor(t, "late finals stray", func() bool { return logs.count("stray response") == 3 })
	if logs.count("status=500") != 1 {
		t.Fatalf("late 500 not logged as a stray")
	}
	checkIdle(t, e)
}

// Stopping the engine ends a transaction in flight at once, as a
// cancellation, not a timeout.
func TestNICTStopCancelsInFlight(t *testing.T) {
	peer := newUDPPeer(t)
	clk := clocktest.New(time.Unix(1_700_000_000, 0))
	e, _ := nictEngine(t, clk, nil)
	ch := nictSend(t, e, peer.uri(), "stop")
	peer.next()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	o := outcome(t, ch)
	if o.timeout || !errors.Is(o.err, context.Canceled) {
		t.Fatalf("outcome %+v, want canceled", o)
	}
	if failsOver(o) {
		t.Fatal("a canceled transaction fails over")
	}
	checkIdle(t, e)
}

// A 401 is answered once with credentials: CSeq+1, same Call-ID.
func TestNICTDigestAuth(t *testing.T) {
	peer := newUDPPeer(t)
	clk := clocktest.New(time.Unix(1_700_000_000, 0))
	e, _ := nictEngine(t, clk, func(c *Config) { c.AuthUsername, c.AuthPassword = "puaside", "secret" })
	ch := nictSend(t, e, peer.uri(), "auth")
	r := peer.next()
	peer.reply(r, 401, func(res *sip.Response) {
		res.AppendHeader(sip.NewHeader("WWW-Authenticate", `Digest realm="example.com", nonce="abc123", algorithm=MD5`))
	})
	r2 := peer.next()
	auth := headerValue(r2.req, "Authorization")
	if !strings.Contains(auth, `username="puaside"`) || !strings.Contains(auth, `realm="example.com"`) {
		t.Fatalf("Authorization %q", auth)
	}
	if r2.req.CSeq().SeqNo != r.req.CSeq().SeqNo+1 || r2.req.CallID().Value() != "auth" || branchOf(r2.req) == branchOf(r.req) {
		t.Fatalf("retry:\n%s\nafter:\n%s", r2.raw, r.raw)
	}
	peer.reply(r2, 200, nil)
	o := outcome(t, ch)
	if o.err != nil || o.res.StatusCode != 200 || o.cseq != 2 {
		t.Fatalf("outcome %+v", o)
	}
	checkIdle(t, e)
}

// A request that cannot be sent (an IPv6 destination from the IPv4
// listener) fails at once with an error, not a timeout, and fails over.
func TestNICTSendError(t *testing.T) {
	clk := clocktest.New(time.Unix(1_700_000_000, 0))
	e, _ := nictEngine(t, clk, nil)
	o := outcome(t, nictSend(t, e, "sip:[::1]:5060", "unsendable"))
	if o.err == nil || o.timeout || o.res != nil || !failsOver(o) {
		t.Fatalf("outcome %+v, want a send error", o)
	}
	checkIdle(t, e)
}

// captureWriter keeps the datagrams a transaction sends.
type captureWriter struct {
	mu  sync.Mutex
	out [][]byte
}

func (w *captureWriter) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.out = append(w.out, bytes.Clone(b))
	return len(b), nil
}

func (w *captureWriter) first() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.out) == 0 {
		return nil
	}
	return w.out[0]
}

// TestNICTTapTakesItsResponses: the listener's tap takes a response to a
// live transaction (sipgo never sees it) and leaves everything else, a
// request or a response to no transaction, to sipgo.
func TestNICTTapTakesItsResponses(t *testing.T) {
	l := newNICTLayer(clocktest.New(time.Unix(1_700_000_000, 0)))
	tap := l.tap()
	w := &captureWriter{}
	req := sip.NewRequest(sip.PUBLISH, sip.Uri{Scheme: "sip", User: "alice", Host: "example.com"})
	params := sip.NewParams()
	params.Add("branch", sip.GenerateBranch())
	req.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "127.0.0.1",
		Port: 5070, Params: params})
	req.AppendHeader(sip.NewHeader("From", "<sip:alice@example.com>;tag=f"))
	req.AppendHeader(sip.NewHeader("To", "<sip:alice@example.com>"))
	req.AppendHeader(sip.NewHeader("Call-ID", "tap-1"))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.PUBLISH})
	req.Laddr = sip.Addr{IP: net.IPv4(127, 0, 0, 1), Port: 5070}
	dst := netip.MustParseAddrPort("127.0.0.1:5060")
	type result struct {
		res *sip.Response
		err error
	}
	done := make(chan result, 1)
	if _, err := l.start(w, dst, req, 0, func(res *sip.Response, err error) { done <- result{res, err} }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "request sent", func() bool { return w.first() != nil })
	sent, err := sip.NewParser().ParseSIP(w.first())
	if err != nil {
		t.Fatal(err)
	}
	from := netip.MustParseAddrPort("127.0.0.1:5060")
	if tap([]byte("NOTIFY sip:x@127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n"), from) {
		t.Fatal("the tap took a request")
	}
	stray := sip.NewResponseFromRequest(sent.(*sip.Request), 200, "OK", nil)
	stray.Via().Params.Add("branch", sip.GenerateBranch())
	if tap([]byte(stray.String()), from) {
		t.Fatal("the tap took a response to no live transaction")
	}
	res := sip.NewResponseFromRequest(sent.(*sip.Request), 202, "Accepted", nil)
	if !tap([]byte(res.String()), from) {
		t.Fatal("the tap left the live transaction's response to sipgo")
	}
	select {
	case r := <-done:
		if r.err != nil || r.res.StatusCode != 202 || r.res.Source() != from.String() {
			t.Fatalf("outcome %v %v", r.res, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the transaction did not end with the tapped response")
	}
}
