package pua

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/clock/clocktest"
)

// fakeClock is a Clock driven by Advance.
type fakeClock = clocktest.Fake

func newFakeClock() *fakeClock { return clocktest.New(time.Unix(1_700_000_000, 0)) }

// reply is what the fake server answers to one request.
type reply struct {
	code       int
	etag       string // SIP-ETag on 2xx ("" → generated; "-" → none)
	expires    int    // granted Expires (0 → the requested value)
	minExpires int    // Min-Expires on 423
	drop       bool   // never answer
	challenge  bool   // 401 unless the request carries Authorization
	hold       bool   // wait for release() before answering
	retryAfter int    // Retry-After (seconds) on the reply, 0 = none
}

// fakeServer is an in-process presence server / notifier: it records every
// request and answers from a script (default 200 with SIP-ETag).
type fakeServer struct {
	t       testing.TB
	ua      *sipgo.UserAgent
	srv     *sipgo.Server
	cl      *sipgo.Client
	port    int // UDP and TCP
	mu      sync.Mutex
	reqs    []*sip.Request
	script  []reply
	def     reply
	seen    map[string]reply
	etagN   int
	active  map[string]int
	maxConc map[string]int
	held    chan struct{}
	nHeld   int
	quiet   bool // do not record (benchmarks)
	count   int
	optCode int // status answered to OPTIONS (0 → 200)
	optN    int // OPTIONS received
}

func newFakeServer(t testing.TB) *fakeServer {
	t.Helper()
	fs := &fakeServer{t: t, seen: map[string]reply{}, active: map[string]int{}, maxConc: map[string]int{},
		def: reply{code: 200}, held: make(chan struct{})}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("fake-esc"),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(log)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(log),
			sip.WithTransactionLayerUnhandledResponseHandler(func(*sip.Response) {})))
	if err != nil {
		t.Fatal(err)
	}
	fs.ua = ua
	fs.srv, _ = sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	fs.cl, _ = sipgo.NewClient(ua, sipgo.WithClientLogger(log), sipgo.WithClientHostname("127.0.0.1"))
	fs.srv.OnPublish(fs.handle)
	fs.srv.OnSubscribe(fs.handle)
	fs.srv.OnOptions(fs.options)
	var pc net.PacketConn
	var ln net.Listener
	for range 50 {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			fs.port = port
			break
		}
		pc.Close()
	}
	if fs.port == 0 {
		t.Fatal("no free UDP+TCP port pair")
	}
	go fs.srv.ServeUDP(pc)
	go fs.srv.ServeTCP(ln)
	t.Cleanup(func() {
		fs.release()
		ua.Close()
		pc.Close()
		ln.Close()
	})
	return fs
}

func (fs *fakeServer) uri() string { return fmt.Sprintf("sip:127.0.0.1:%d", fs.port) }

// push appends replies to the script.
func (fs *fakeServer) push(rs ...reply) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.script = append(fs.script, rs...)
}

// release answers every held request.
func (fs *fakeServer) release() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	select {
	case <-fs.held:
	default:
		close(fs.held)
	}
}

func (fs *fakeServer) requests() []*sip.Request {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]*sip.Request(nil), fs.reqs...)
}

func (fs *fakeServer) handle(req *sip.Request, tx sip.ServerTransaction) {
	branch, _ := req.Via().Params.Get("branch")
	rk := req.Recipient.String() + "|" + headerValue(req, "Event")
	fs.mu.Lock()
	rep, dup := fs.seen[branch]
	if !dup {
		if len(fs.script) > 0 {
			rep, fs.script = fs.script[0], fs.script[1:]
		} else {
			rep = fs.def
		}
		if rep.drop {
			fs.seen[branch] = rep
		}
		fs.count++
		if !fs.quiet {
			fs.reqs = append(fs.reqs, req)
		}
		fs.active[rk]++
		if fs.active[rk] > fs.maxConc[rk] {
			fs.maxConc[rk] = fs.active[rk]
		}
		if rep.hold {
			fs.nHeld++
		}
	}
	held := fs.held
	fs.mu.Unlock()
	if dup {
		return // retransmission of a dropped request
	}
	// Leave the in-flight count before the reply can reach the client.
	done := func() {
		fs.mu.Lock()
		fs.active[rk]--
		fs.mu.Unlock()
	}
	if rep.drop {
		done()
		return
	}
	if rep.hold {
		<-held
	}
	if rep.challenge && req.GetHeader("Authorization") == nil {
		res := sip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
		res.AppendHeader(sip.NewHeader("WWW-Authenticate", `Digest realm="example.com", nonce="n0nce", algorithm=MD5, qop="auth"`))
		done()
		_ = tx.Respond(res)
		return
	}
	res := sip.NewResponseFromRequest(req, rep.code, "Reply", nil)
	exp := rep.expires
	if exp == 0 {
		exp, _ = strconv.Atoi(headerValue(req, "Expires"))
	}
	if rep.code >= 200 && rep.code < 300 {
		if req.Method == sip.PUBLISH && rep.etag != "-" {
			etag := rep.etag
			if etag == "" {
				fs.mu.Lock()
				fs.etagN++
				etag = fmt.Sprintf("etag%d", fs.etagN)
				fs.mu.Unlock()
			}
			res.AppendHeader(sip.NewHeader("SIP-ETag", etag))
		}
		e := sip.ExpiresHeader(exp)
		res.AppendHeader(&e)
		if req.Method == sip.SUBSCRIBE {
			res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "notifier", Host: "127.0.0.1", Port: fs.port}})
		}
	}
	if rep.retryAfter > 0 {
		res.AppendHeader(sip.NewHeader("Retry-After", strconv.Itoa(rep.retryAfter)))
	}
	if rep.code == 423 {
		res.AppendHeader(sip.NewHeader("Min-Expires", strconv.Itoa(rep.minExpires)))
	}
	done()
	_ = tx.Respond(res)
}

// notify sends a NOTIFY within the dialog of SUBSCRIBE sub (toTag is the
// notifier's tag); it returns the reply status.
func (fs *fakeServer) notify(sub *sip.Request, toTag, state, ctype string, body []byte) int {
	fs.t.Helper()
	res, err := fs.sendNotify(sub, toTag, state, ctype, body, 1)
	if err != nil {
		fs.t.Errorf("notify: %v", err)
		return 0
	}
	return res.StatusCode
}

// notifySeq sends a NOTIFY with the given CSeq within the dialog of
// SUBSCRIBE sub (toTag is the notifier's tag) and returns the reply.
func (fs *fakeServer) notifySeq(sub *sip.Request, toTag, state string, seq uint32) *sip.Response {
	fs.t.Helper()
	res, err := fs.sendNotify(sub, toTag, state, "", nil, seq)
	if err != nil {
		fs.t.Errorf("notify cseq %d: %v", seq, err)
		return nil
	}
	return res
}

// sendNotify sends a NOTIFY with CSeq seq within the dialog of SUBSCRIBE
// sub; an empty state leaves out Subscription-State.
func (fs *fakeServer) sendNotify(sub *sip.Request, toTag, state, ctype string, body []byte, seq uint32) (*sip.Response, error) {
	var contact sip.Uri
	if c := sub.Contact(); c != nil {
		contact = c.Address
	}
	req := sip.NewRequest(sip.NOTIFY, contact)
	from := sub.To().AsFrom()
	from.Params = sip.NewParams()
	from.Params.Add("tag", toTag)
	to := sub.From().AsTo()
	req.AppendHeader(&from)
	req.AppendHeader(&to)
	req.AppendHeader(sub.CallID())
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: sip.NOTIFY})
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "notifier", Host: "127.0.0.1", Port: fs.port}})
	req.AppendHeader(sip.NewHeader("Event", headerValue(sub, "Event")))
	if state != "" {
		req.AppendHeader(sip.NewHeader("Subscription-State", state))
	}
	if len(body) > 0 {
		ct := sip.ContentTypeHeader(ctype)
		req.AppendHeader(&ct)
	}
	req.SetBody(body)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return fs.cl.Do(ctx, req)
}

// waitFor polls cond until it holds or a bounded deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// memStore is an in-memory Store.
type memStore struct {
	mu    sync.Mutex
	rows  map[identity]Record
	saves int
}

func newMemStore() *memStore { return &memStore{rows: map[identity]Record{}} }

func (m *memStore) LoadRecords(context.Context) ([]Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Record
	for _, r := range m.rows {
		out = append(out, r)
	}
	return out, nil
}

func (m *memStore) SaveRecords(_ context.Context, up, rm []Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.saves++
	for _, r := range rm {
		delete(m.rows, idOf(r))
	}
	for _, r := range up {
		m.rows[idOf(r)] = r
	}
	return nil
}

// failingStore is a memStore that refuses every write while fail is set
// (with err, context.DeadlineExceeded when nil) and, like a database, fails
// a write whose context has ended.
type failingStore struct {
	*memStore
	mu   sync.Mutex
	fail bool
	err  error
}

func (f *failingStore) setFail(b bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = b
}

func (f *failingStore) SaveRecords(ctx context.Context, up, rm []Record) error {
	f.mu.Lock()
	fail, err := f.fail, f.err
	f.mu.Unlock()
	if fail {
		if err == nil {
			err = context.DeadlineExceeded
		}
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return f.memStore.SaveRecords(ctx, up, rm)
}

// newTestEngine starts an engine against fs with a fake clock.
func newTestEngine(t testing.TB, fs *fakeServer, clk Clock, st Store, mod func(*Config)) *Engine {
	t.Helper()
	return newTestEngineOwners(t, fs, clk, st, mod, nil)
}

// newTestEngineOwners is newTestEngine with owners that claim at start.
func newTestEngineOwners(t testing.TB, fs *fakeServer, clk Clock, st Store, mod func(*Config), owners []int) *Engine {
	t.Helper()
	cfg := testConfig(fs)
	// Tests of the short lease set it themselves (see lease_test.go).
	cfg.InitialExpires = 24 * time.Hour
	if mod != nil {
		mod(&cfg)
	}
	return startTestEngine(t, cfg, Options{Clock: clk, Store: st, Owners: owners})
}

// testConfig is the configuration of a test engine talking to fs.
func testConfig(fs *fakeServer) Config {
	cfg := DefaultConfig()
	cfg.Listen = []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0"}
	cfg.ServerAddress = fs.uri()
	cfg.RequestTimeout = 400 * time.Millisecond
	cfg.MaxOutstanding = 8
	return cfg
}

// startTestEngine starts an engine that logs nowhere and is stopped when
// the test ends.
func startTestEngine(t testing.TB, cfg Config, opts Options) *Engine {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	e, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.Stop(ctx)
	})
	return e
}
