// Package sipphone is a small SIP phone for tests, built on sipgo: it
// registers at a registrar, places and answers calls through a proxy, and
// watches presence state (SUBSCRIBE, collecting every NOTIFY). It plays the
// phones and watchers around puaside: phones make the registrations and calls
// that the proxy mirrors into ingest, and watchers check what the pua engine
// published at the presence server.
//
// A Phone binds one UDP socket on 127.0.0.1 (a free port) and sends every
// request from it, so replies, calls and NOTIFYs come back to it. Everything
// is closed when the test ends. A flow phone (NewFlowPhone) binds nothing:
// it connects over TLS, WS or WSS like a browser phone and is reached only
// over that connection. Each transaction uses a freshly built request;
// CSeq numbers are kept per dialog by the phone.
package sipphone

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// DefaultWait bounds the helpers' waits when the context has no deadline.
const DefaultWait = 10 * time.Second

// ErrNoAnswer is returned when a transaction ends without a final response.
var ErrNoAnswer = errors.New("sipphone: no final response")

// Policy decides the final response of an incoming INVITE: 200 answers
// (with a minimal SDP), 300-699 rejects with that code, 0 keeps ringing
// until the caller cancels or the test calls Answer or Reject on the
// IncomingCall.
type Policy func(req *sip.Request) int

// AutoAnswer answers every call.
func AutoAnswer(*sip.Request) int { return 200 }

// KeepRinging never answers on its own.
func KeepRinging(*sip.Request) int { return 0 }

// RejectWith rejects every call with code.
func RejectWith(code int) Policy { return func(*sip.Request) int { return code } }

// Phone is a test SIP user agent for user@domain.
type Phone struct {
	// User and Domain form the phone's AoR sip:User@Domain.
	User, Domain string

	t    testing.TB
	log  *slog.Logger
	ua   *sipgo.UserAgent
	srv  *sipgo.Server
	cl   *sipgo.Client
	conn net.PacketConn
	tcpL net.Listener // TCP on the same port as conn
	host string
	port int
	// transport is the flow phone's transport ("TLS", "WS", "WSS"); ""
	// for a UDP phone.
	transport string
	dcc       *sipgo.DialogClientCache
	dsc       *sipgo.DialogServerCache

	incoming chan *IncomingCall

	mu        sync.Mutex
	policy    Policy
	ringDelay time.Duration // before the 180 of an incoming call
	userAgent string        // User-Agent of REGISTER ("" = "sipphone")
	reg       regState
	watchers  map[string]*Watcher // by Call-ID
	wg        sync.WaitGroup
}

type regState struct {
	callID  string
	fromTag string
	cseq    uint32
}

// NewPhone starts a phone for sip:user@domain on 127.0.0.1 (UDP, free
// port). It answers incoming calls with AutoAnswer until SetPolicy.
func NewPhone(t testing.TB, user, domain string) *Phone {
	t.Helper()
	// UDP and TCP on one port: a peer sends a request too large for UDP
	// over TCP to the same address (RFC 3261 §18.1.1).
	var conn net.PacketConn
	var tcpL net.Listener
	var err error
	for i := 0; ; i++ {
		if conn, err = net.ListenPacket("udp4", "127.0.0.1:0"); err != nil {
			t.Fatalf("sipphone: listen: %v", err)
		}
		if tcpL, err = net.Listen("tcp4", conn.LocalAddr().String()); err == nil {
			break
		}
		conn.Close()
		if i == 20 {
			t.Fatalf("sipphone: no port free for both UDP and TCP: %v", err)
		}
	}
	addr := conn.LocalAddr().(*net.UDPAddr)
	p := &Phone{
		User: user, Domain: domain, t: t, conn: conn, tcpL: tcpL,
		host: "127.0.0.1", port: addr.Port,
		log:      slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		incoming: make(chan *IncomingCall, 16),
		policy:   AutoAnswer,
		watchers: map[string]*Watcher{},
	}
	p.ua, err = sipgo.NewUA(sipgo.WithUserAgent(user), sipgo.WithUserAgentHostname(domain))
	if err != nil {
		conn.Close()
		tcpL.Close()
		t.Fatalf("sipphone: ua: %v", err)
	}
	p.srv, err = sipgo.NewServer(p.ua, sipgo.WithServerLogger(p.log))
	if err != nil {
		t.Fatalf("sipphone: server: %v", err)
	}
	p.cl, err = sipgo.NewClient(p.ua, sipgo.WithClientConnectionAddr(conn.LocalAddr().String()),
		sipgo.WithClientHostname(p.host), sipgo.WithClientPort(p.port), sipgo.WithClientLogger(p.log))
	if err != nil {
		t.Fatalf("sipphone: client: %v", err)
	}
	contact := sip.ContactHeader{Address: p.ContactURI(user)}
	p.dcc = sipgo.NewDialogClientCache(p.cl, contact)
	p.dsc = sipgo.NewDialogServerCache(p.cl, contact)

	p.srv.OnInvite(p.onInvite)
	p.srv.OnAck(p.onAck)
	p.srv.OnBye(p.onBye)
	p.srv.OnNotify(p.onNotify)
	p.srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	})

	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		_ = p.srv.ServeUDP(conn)
	}()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		_ = p.srv.ServeTCP(tcpL)
	}()
	// Requests reuse the listening socket only once it is in the pool.
	for i := 0; ; i++ {
		if c, err := p.ua.TransportLayer().GetConnection("udp", conn.LocalAddr().String()); err == nil && c != nil {
			break
		}
		if i == 1000 {
			t.Fatalf("sipphone: listener %s not ready", conn.LocalAddr())
		}
		time.Sleep(time.Millisecond)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// NewFlowPhone starts a phone for sip:user@domain that binds no socket:
// its requests open a connection of transport ("tls", "ws" or "wss", with
// tlsConf for tls and wss) to where they go, and its Contact is
// sip:user@<random>.invalid;transport=<transport> (RFC 7118 §5.2), so
// requests to it (NOTIFYs) can only come back over that connection.
func NewFlowPhone(t testing.TB, user, domain, transport string, tlsConf *tls.Config) *Phone {
	t.Helper()
	p := &Phone{
		User: user, Domain: domain, t: t,
		host: sip.GenerateTagN(10) + ".invalid", transport: strings.ToUpper(transport),
		log:      slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		incoming: make(chan *IncomingCall, 16),
		policy:   AutoAnswer,
		watchers: map[string]*Watcher{},
	}
	var err error
	p.ua, err = sipgo.NewUA(sipgo.WithUserAgent(user), sipgo.WithUserAgentHostname(domain), sipgo.WithUserAgenTLSConfig(tlsConf))
	if err != nil {
		t.Fatalf("sipphone: ua: %v", err)
	}
	p.srv, err = sipgo.NewServer(p.ua, sipgo.WithServerLogger(p.log))
	if err != nil {
		t.Fatalf("sipphone: server: %v", err)
	}
	p.cl, err = sipgo.NewClient(p.ua, sipgo.WithClientHostname(p.host), sipgo.WithClientLogger(p.log))
	if err != nil {
		t.Fatalf("sipphone: client: %v", err)
	}
	contact := sip.ContactHeader{Address: p.ContactURI(user)}
	p.dcc = sipgo.NewDialogClientCache(p.cl, contact)
	p.dsc = sipgo.NewDialogServerCache(p.cl, contact)
	p.srv.OnNotify(p.onNotify)
	p.srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	})
	t.Cleanup(func() { p.Close() })
	return p
}

// Close stops the phone; it is called when the test ends.
func (p *Phone) Close() {
	_ = p.ua.Close()
	if p.conn != nil {
		_ = p.conn.Close()
	}
	if p.tcpL != nil {
		_ = p.tcpL.Close()
	}
	p.wg.Wait()
}

// Addr returns the phone's "127.0.0.1:port".
func (p *Phone) Addr() string { return net.JoinHostPort(p.host, strconv.Itoa(p.port)) }

// AoR returns sip:User@Domain.
func (p *Phone) AoR() sip.Uri { return sip.Uri{Scheme: "sip", User: p.User, Host: p.Domain} }

// ContactURI returns sip:user@127.0.0.1:port (the phone's socket) for user,
// or for a flow phone sip:user@<random>.invalid;transport=<transport>.
func (p *Phone) ContactURI(user string) sip.Uri {
	if p.transport != "" {
		u := sip.Uri{Scheme: "sip", User: user, Host: p.host, UriParams: sip.NewParams()}
		u.UriParams.Add("transport", strings.ToLower(p.transport))
		return u
	}
	return sip.Uri{Scheme: "sip", User: user, Host: p.host, Port: p.port}
}

// SetPolicy sets how incoming INVITEs are answered.
func (p *Phone) SetPolicy(pol Policy) {
	p.mu.Lock()
	p.policy = pol
	p.mu.Unlock()
}

// SetRingDelay makes the phone wait d before it rings (sends its 180) on
// an incoming call: a fork of a call that rings late.
func (p *Phone) SetRingDelay(d time.Duration) {
	p.mu.Lock()
	p.ringDelay = d
	p.mu.Unlock()
}

// Incoming delivers every incoming call (buffered; extra calls are not
// delivered when the buffer is full but are still handled by the policy).
func (p *Phone) Incoming() <-chan *IncomingCall { return p.incoming }

// SetUserAgent sets the User-Agent header of the phone's REGISTERs (any
// bytes, for tests of hostile input).
func (p *Phone) SetUserAgent(ua string) {
	p.mu.Lock()
	p.userAgent = ua
	p.mu.Unlock()
}

// Register sends REGISTER for the phone's AoR to registrar ("host:port")
// with Expires expires and returns the final response. Successive calls
// share one Call-ID with increasing CSeq.
func (p *Phone) Register(ctx context.Context, registrar string, expires int) (*sip.Response, error) {
	p.mu.Lock()
	if p.reg.callID == "" {
		p.reg = regState{callID: sip.GenerateTagN(16) + "@" + p.host, fromTag: sip.GenerateTagN(12), cseq: 0}
	}
	p.reg.cseq++
	st := p.reg
	ua := p.userAgent
	p.mu.Unlock()
	if ua == "" {
		ua = "sipphone"
	}

	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: p.Domain})
	aor := p.AoR()
	from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
	from.Params.Add("tag", st.fromTag)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: aor, Params: sip.NewParams()})
	cid := sip.CallIDHeader(st.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: st.cseq, MethodName: sip.REGISTER})
	req.AppendHeader(&sip.ContactHeader{Address: p.ContactURI(p.User)})
	exp := sip.ExpiresHeader(expires)
	req.AppendHeader(&exp)
	req.AppendHeader(sip.NewHeader("User-Agent", ua))
	req.SetDestination(registrar)
	return p.do(ctx, req)
}

// Unregister sends REGISTER with Expires 0 for the phone's contact.
func (p *Phone) Unregister(ctx context.Context, registrar string) (*sip.Response, error) {
	return p.Register(ctx, registrar, 0)
}

// do sends req in a new client transaction and returns its final response.
func (p *Phone) do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	ctx, cancel := withDefaultWait(ctx)
	defer cancel()
	if p.transport != "" {
		req.SetTransport(p.transport)
	}
	res, err := p.cl.Do(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("sipphone: %s %s: %w", req.Method, req.Recipient.String(), err)
	}
	return res, nil
}

// Request sends a request built by the caller (fresh, with its own From,
// To, Call-ID and CSeq) to dest ("host:port") and returns the final
// response. Missing Via, Max-Forwards and Content-Length are added.
func (p *Phone) Request(ctx context.Context, dest string, req *sip.Request) (*sip.Response, error) {
	req.SetDestination(dest)
	return p.do(ctx, req)
}

func withDefaultWait(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, DefaultWait)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}
