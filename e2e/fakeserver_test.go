package e2e

import (
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

// fakePS is an in-process SIP presence server on 127.0.0.1 (UDP, a free
// port) in place of Kamailio: what it does with a PUBLISH or SUBSCRIBE is
// up to the handlers it is started with; it has a client on its own socket
// for requests it sends (NOTIFY).
type fakePS struct {
	addr string // 127.0.0.1:port
	port int
	ua   *sipgo.UserAgent
	srv  *sipgo.Server
	conn net.PacketConn
	cl   *sipgo.Client
	// done is closed when the fake stops; handlers holding a transaction
	// wait on it.
	done  chan struct{}
	wg    sync.WaitGroup
	etags atomic.Uint64
}

// fakePSHandlers are the requests a fakePS serves; a nil handler leaves
// the method unserved.
type fakePSHandlers struct {
	publish, subscribe sipgo.RequestHandler
}

// newFakePS makes a fake presence server named name (its User-Agent) on a
// fresh socket; serve starts it. It stops when the test ends.
func newFakePS(tb testing.TB, name string) *fakePS {
	tb.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("fake presence: listen: %v", err)
	}
	f := &fakePS{addr: conn.LocalAddr().String(), port: conn.LocalAddr().(*net.UDPAddr).Port, conn: conn, done: make(chan struct{})}
	log := slog.New(slog.DiscardHandler)
	f.ua, err = sipgo.NewUA(sipgo.WithUserAgent(name), sipgo.WithUserAgentHostname("127.0.0.1"),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(log)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(log),
			sip.WithTransactionLayerUnhandledResponseHandler(func(*sip.Response) {})))
	if err != nil {
		conn.Close()
		tb.Fatalf("fake presence: ua: %v", err)
	}
	tb.Cleanup(func() {
		close(f.done)
		_ = f.ua.Close()
		_ = f.conn.Close()
		f.wg.Wait()
	})
	if f.srv, err = sipgo.NewServer(f.ua, sipgo.WithServerLogger(log)); err != nil {
		tb.Fatalf("fake presence: server: %v", err)
	}
	f.cl, err = sipgo.NewClient(f.ua, sipgo.WithClientConnectionAddr(f.addr), sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientLogger(log))
	if err != nil {
		tb.Fatalf("fake presence: client: %v", err)
	}
	return f
}

// serve starts serving h; call it once.
func (f *fakePS) serve(tb testing.TB, h fakePSHandlers) {
	tb.Helper()
	if h.publish != nil {
		f.srv.OnPublish(h.publish)
	}
	if h.subscribe != nil {
		f.srv.OnSubscribe(h.subscribe)
	}
	serveUDP(tb, "fake presence", f.ua, f.srv, f.conn, &f.wg)
}

// URI is the fake's SIP URI, for pua.server_address.
func (f *fakePS) URI() string { return "sip:" + f.addr }

// nextETag returns a fresh entity tag: prefix and a sequence number.
func (f *fakePS) nextETag(prefix string) string {
	return prefix + strconv.FormatUint(f.etags.Add(1), 10)
}

// fakeHdr is the trimmed value of req's header name ("" if absent).
func fakeHdr(req *sip.Request, name string) string {
	if h := req.GetHeader(name); h != nil {
		return strings.TrimSpace(h.Value())
	}
	return ""
}

// fakeExpires is req's Expires, 3600 when absent.
func fakeExpires(req *sip.Request) string {
	if exp := fakeHdr(req, "Expires"); exp != "" {
		return exp
	}
	return "3600"
}

// fakeAcceptPublish answers a PUBLISH 200 with etag as SIP-ETag and the
// asked Expires (3600 when absent).
func fakeAcceptPublish(req *sip.Request, tx sip.ServerTransaction, etag string) {
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	res.AppendHeader(sip.NewHeader("SIP-ETag", etag))
	res.AppendHeader(sip.NewHeader("Expires", fakeExpires(req)))
	_ = tx.Respond(res)
}

// serveUDP serves srv on conn in a goroutine counted in wg, and waits until
// the socket is in ua's connection pool: requests sent by a client of ua
// reuse the listening socket only once it is there.
func serveUDP(tb testing.TB, what string, ua *sipgo.UserAgent, srv *sipgo.Server, conn net.PacketConn, wg *sync.WaitGroup) {
	tb.Helper()
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = srv.ServeUDP(conn)
	}()
	for i := 0; ; i++ {
		if c, err := ua.TransportLayer().GetConnection("udp", conn.LocalAddr().String()); err == nil && c != nil {
			return
		}
		if i == 1000 {
			tb.Fatalf("%s: listener %s not ready", what, conn.LocalAddr())
		}
		time.Sleep(time.Millisecond)
	}
}
