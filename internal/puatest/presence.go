package puatest

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Reply is what a PresenceServer answers to one PUBLISH or SUBSCRIBE.
type Reply struct {
	Code       int
	ETag       string // SIP-ETag on a 2xx PUBLISH ("" → generated; "-" → none)
	Expires    int    // granted Expires (0 → the requested value)
	MinExpires int    // Min-Expires on 423
	Drop       bool   // never answer (retransmissions are ignored too)
	Challenge  bool   // 401 unless the request carries Authorization
	Hold       bool   // wait for Release before answering
	RetryAfter int    // Retry-After (seconds) on the reply, 0 = none
}

// ServerOptions configure a PresenceServer.
type ServerOptions struct {
	// Name is the server's User-Agent (default "puatest-presence").
	Name string
	// ContactUser is the user part of the server's Contact in SUBSCRIBE
	// replies and NOTIFYs (default "notifier").
	ContactUser string
	// Publish and Subscribe, when set, answer that method instead of the
	// script; such requests are not recorded. The server serves before
	// NewPresenceServer returns: a handler that reaches the returned server
	// through a variable set from it waits until that is done (close a
	// channel after the assignment), or the race detector reports it.
	Publish, Subscribe sipgo.RequestHandler
}

// PresenceServer is an in-process SIP presence server and notifier on
// 127.0.0.1, UDP and TCP on one free port. By default it records every
// PUBLISH and SUBSCRIBE and answers from a script of Replies (then the
// default Reply: 200 with a SIP-ETag and the asked Expires); handlers in
// ServerOptions take a method over instead. It answers OPTIONS, sends
// NOTIFYs within a SUBSCRIBE's dialog, and stops when the test ends.
type PresenceServer struct {
	tb   testing.TB
	user string // of the Contact
	ua   *sipgo.UserAgent
	srv  *sipgo.Server
	cl   *sipgo.Client
	port int
	wg   sync.WaitGroup
	done chan struct{} // closed when the test ends

	mu       sync.Mutex
	reqs     []*sip.Request
	script   []Reply
	def      Reply
	seen     map[string]Reply // branch → reply of a dropped request
	active   map[string]int   // in flight by Request-URI and Event
	maxConc  map[string]int
	held     chan struct{}
	quiet    bool // record nothing (benchmarks)
	count    int
	optCode  int // status answered to OPTIONS (0 → 200)
	optCount int

	etags atomic.Uint64
}

// NewPresenceServer starts a presence server; it stops when the test ends.
func NewPresenceServer(tb testing.TB, opts ServerOptions) *PresenceServer {
	tb.Helper()
	if opts.Name == "" {
		opts.Name = "puatest-presence"
	}
	if opts.ContactUser == "" {
		opts.ContactUser = "notifier"
	}
	s := &PresenceServer{tb: tb, user: opts.ContactUser, seen: map[string]Reply{}, active: map[string]int{}, maxConc: map[string]int{},
		def: Reply{Code: 200}, held: make(chan struct{}), done: make(chan struct{})}
	log := slog.New(slog.DiscardHandler)
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(opts.Name), sipgo.WithUserAgentHostname("127.0.0.1"),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(log)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(log),
			sip.WithTransactionLayerUnhandledResponseHandler(func(*sip.Response) {})))
	if err != nil {
		tb.Fatalf("presence server: ua: %v", err)
	}
	s.ua = ua
	if s.srv, err = sipgo.NewServer(ua, sipgo.WithServerLogger(log)); err != nil {
		tb.Fatalf("presence server: server: %v", err)
	}
	if s.cl, err = sipgo.NewClient(ua, sipgo.WithClientLogger(log), sipgo.WithClientHostname("127.0.0.1")); err != nil {
		tb.Fatalf("presence server: client: %v", err)
	}
	s.srv.OnPublish(s.handle)
	s.srv.OnSubscribe(s.handle)
	if opts.Publish != nil {
		s.srv.OnPublish(opts.Publish)
	}
	if opts.Subscribe != nil {
		s.srv.OnSubscribe(opts.Subscribe)
	}
	s.srv.OnOptions(s.options)
	var pc net.PacketConn
	var ln net.Listener
	for range 50 {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			tb.Fatalf("presence server: listen: %v", err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		if ln, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			s.port = port
			break
		}
		_ = pc.Close()
	}
	if s.port == 0 {
		tb.Fatal("presence server: no free UDP+TCP port pair")
	}
	s.wg.Add(2)
	go func() { defer s.wg.Done(); _ = s.srv.ServeUDP(pc) }()
	go func() { defer s.wg.Done(); _ = s.srv.ServeTCP(ln) }()
	tb.Cleanup(func() {
		close(s.done)
		s.Release()
		_ = ua.Close()
		_ = pc.Close()
		_ = ln.Close()
		s.wg.Wait()
	})
	return s
}

// URI is the server's SIP URI ("sip:127.0.0.1:port").
func (s *PresenceServer) URI() string { return fmt.Sprintf("sip:127.0.0.1:%d", s.port) }

// Addr is "127.0.0.1:port".
func (s *PresenceServer) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// Port is the UDP and TCP port.
func (s *PresenceServer) Port() int { return s.port }

// Contact is the server's Contact address (ContactUser@127.0.0.1:port).
func (s *PresenceServer) Contact() sip.Uri {
	return sip.Uri{Scheme: "sip", User: s.user, Host: "127.0.0.1", Port: s.port}
}

// Server is the sipgo server, to serve more listeners (TLS).
func (s *PresenceServer) Server() *sipgo.Server { return s.srv }

// Client sends requests from the server's user agent.
func (s *PresenceServer) Client() *sipgo.Client { return s.cl }

// ServeTLS adds a TLS listener on a free port and returns its sips: URI.
func (s *PresenceServer) ServeTLS(tb testing.TB, conf *tls.Config) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("presence server: listen tls: %v", err)
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); _ = s.srv.ServeTLS(tls.NewListener(ln, conf)) }()
	tb.Cleanup(func() { _ = ln.Close() })
	return fmt.Sprintf("sips:127.0.0.1:%d", ln.Addr().(*net.TCPAddr).Port)
}

// Done is closed when the test ends: a handler holding a transaction
// waits on it.
func (s *PresenceServer) Done() <-chan struct{} { return s.done }

// Go runs f in a goroutine that the server waits for when the test ends
// (a handler's NOTIFY sent after its reply).
func (s *PresenceServer) Go(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// Push appends replies to the script.
func (s *PresenceServer) Push(rs ...Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = append(s.script, rs...)
}

// SetDefault sets the reply given once the script is used up.
func (s *PresenceServer) SetDefault(r Reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.def = r
}

// SetQuiet stops (or resumes) recording requests; Count still counts.
func (s *PresenceServer) SetQuiet(q bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quiet = q
}

// Release answers every held request, now and later.
func (s *PresenceServer) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.held:
	default:
		close(s.held)
	}
}

// Requests returns the recorded requests, oldest first.
func (s *PresenceServer) Requests() []*sip.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*sip.Request(nil), s.reqs...)
}

// Count is the number of scripted requests answered (retransmissions of a
// dropped request not counted).
func (s *PresenceServer) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// MaxInFlight returns, by "Request-URI|Event", the most requests that were
// in flight at once.
func (s *PresenceServer) MaxInFlight() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.maxConc))
	for k, v := range s.maxConc {
		out[k] = v
	}
	return out
}

// SetOptions sets the status answered to OPTIONS (0: 200).
func (s *PresenceServer) SetOptions(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.optCode = code
}

// OptionsSeen is how many OPTIONS arrived.
func (s *PresenceServer) OptionsSeen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.optCount
}

// NextETag returns a fresh entity tag: prefix and a sequence number.
func (s *PresenceServer) NextETag(prefix string) string {
	return prefix + strconv.FormatUint(s.etags.Add(1), 10)
}

func (s *PresenceServer) options(req *sip.Request, tx sip.ServerTransaction) {
	s.mu.Lock()
	s.optCount++
	code := s.optCode
	s.mu.Unlock()
	if code == 0 {
		code = 200
	}
	_ = tx.Respond(sip.NewResponseFromRequest(req, code, "Probe", nil))
}

func (s *PresenceServer) handle(req *sip.Request, tx sip.ServerTransaction) {
	branch, _ := req.Via().Params.Get("branch")
	rk := req.Recipient.String() + "|" + Header(req, "Event")
	s.mu.Lock()
	rep, dup := s.seen[branch]
	if !dup {
		if len(s.script) > 0 {
			rep, s.script = s.script[0], s.script[1:]
		} else {
			rep = s.def
		}
		if rep.Drop {
			s.seen[branch] = rep
		}
		s.count++
		if !s.quiet {
			s.reqs = append(s.reqs, req)
		}
		s.active[rk]++
		if s.active[rk] > s.maxConc[rk] {
			s.maxConc[rk] = s.active[rk]
		}
	}
	held := s.held
	s.mu.Unlock()
	if dup {
		return // retransmission of a dropped request
	}
	// Leave the in-flight count before the reply can reach the client.
	done := func() {
		s.mu.Lock()
		s.active[rk]--
		s.mu.Unlock()
	}
	if rep.Drop {
		done()
		return
	}
	if rep.Hold {
		<-held
	}
	if rep.Challenge && req.GetHeader("Authorization") == nil {
		res := sip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
		res.AppendHeader(sip.NewHeader("WWW-Authenticate", `Digest realm="example.com", nonce="n0nce", algorithm=MD5, qop="auth"`))
		done()
		_ = tx.Respond(res)
		return
	}
	res := sip.NewResponseFromRequest(req, rep.Code, "Reply", nil)
	exp := rep.Expires
	if exp == 0 {
		exp, _ = strconv.Atoi(Header(req, "Expires"))
	}
	if rep.Code >= 200 && rep.Code < 300 {
		if req.Method == sip.PUBLISH && rep.ETag != "-" {
			etag := rep.ETag
			if etag == "" {
				etag = s.NextETag("etag")
			}
			res.AppendHeader(sip.NewHeader("SIP-ETag", etag))
		}
		e := sip.ExpiresHeader(exp)
		res.AppendHeader(&e)
		if req.Method == sip.SUBSCRIBE {
			res.AppendHeader(&sip.ContactHeader{Address: s.Contact()})
		}
	}
	if rep.RetryAfter > 0 {
		res.AppendHeader(sip.NewHeader("Retry-After", strconv.Itoa(rep.RetryAfter)))
	}
	if rep.Code == 423 {
		res.AppendHeader(sip.NewHeader("Min-Expires", strconv.Itoa(rep.MinExpires)))
	}
	done()
	_ = tx.Respond(res)
}

// Notify sends a NOTIFY with CSeq seq within the dialog of SUBSCRIBE sub
// (toTag is the notifier's tag) and returns the reply; an empty state
// leaves out Subscription-State.
func (s *PresenceServer) Notify(sub *sip.Request, toTag, state, ctype string, body []byte, seq uint32) (*sip.Response, error) {
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
	req.AppendHeader(&sip.ContactHeader{Address: s.Contact()})
	req.AppendHeader(sip.NewHeader("Event", Header(sub, "Event")))
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
	return s.cl.Do(ctx, req)
}

// Header is the trimmed value of m's header name ("" if absent).
func Header(m interface{ GetHeader(string) sip.Header }, name string) string {
	if h := m.GetHeader(name); h != nil {
		return strings.TrimSpace(h.Value())
	}
	return ""
}

// RequestExpires is req's Expires, "3600" when absent.
func RequestExpires(req *sip.Request) string {
	if exp := Header(req, "Expires"); exp != "" {
		return exp
	}
	return "3600"
}

// AcceptPublish answers a PUBLISH 200 with etag as SIP-ETag and the asked
// Expires (3600 when absent).
func AcceptPublish(req *sip.Request, tx sip.ServerTransaction, etag string) {
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	res.AppendHeader(sip.NewHeader("SIP-ETag", etag))
	res.AppendHeader(sip.NewHeader("Expires", RequestExpires(req)))
	_ = tx.Respond(res)
}
