package pa

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/internal/testpki"
	"github.com/puaside/puaside/internal/wsguard"
	"github.com/puaside/puaside/pua"
)

// startSecure runs a presence server on UDP, TLS, WS and WSS (free
// loopback ports) with a certificate of a test CA for 127.0.0.1; it
// returns the server, its addresses by transport and a client TLS
// configuration trusting the CA.
func startSecure(t *testing.T, cfg Config, o Options) (*Server, map[string]string, *tls.Config) {
	t.Helper()
	return startSecureTB(t, cfg, o)
}

// startSecureTB is startSecure for tests and benchmarks.
func startSecureTB(t testing.TB, cfg Config, o Options) (*Server, map[string]string, *tls.Config) {
	t.Helper()
	ca := testpki.NewCA(t, "pa test CA")
	cert, key := ca.Valid(t, "127.0.0.1")
	f := testpki.WriteFiles(t, t.TempDir(), map[string][]byte{"cert.pem": cert, "key.pem": key})
	cfg.Listen = []string{"udp:127.0.0.1:0", "tls:127.0.0.1:0", "ws:127.0.0.1:0", "wss:127.0.0.1:0"}
	cfg.TLS.CertFile, cfg.TLS.KeyFile = f["cert.pem"], f["key.pem"]
	s, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	})
	addrs := map[string]string{}
	for _, a := range s.Addrs() {
		tr, hp, _ := strings.Cut(a, ":")
		addrs[tr] = hp
	}
	return s, addrs, &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
}

// TestWatcherOverOwnConnection subscribes over TLS, WS and WSS with a
// phone that listens nowhere (a browser phone): the NOTIFYs, the first
// and the one after a publication, come back over its own connection.
func TestWatcherOverOwnConnection(t *testing.T) {
	s, addrs, tc := startSecure(t, DefaultConfig(), Options{})
	for i, tr := range []string{"tls", "ws", "wss"} {
		t.Run(tr, func(t *testing.T) {
			user := "alice" + tr
			pres := "sip:" + user + "@example.com"
			bob := sipphone.NewFlowPhone(t, "bob", "example.com", tr, tc)
			w, err := bob.Watch(context.Background(), addrs[tr], uri(pres), "presence", sipphone.WatchOptions{Expires: 600})
			if err != nil {
				t.Fatal(err)
			}
			ct := w.Response().Contact()
			if ct == nil {
				t.Fatal("200 without Contact")
			}
			if got, _ := ct.Address.UriParams.Get("transport"); got != tr || ct.Address.Port != port(t, addrs[tr]) {
				t.Fatalf("Contact %s: want transport=%s and port of %s", ct.Address.String(), tr, addrs[tr])
			}
			first := wait(t, w, has("<basic>closed</basic>"))
			key := pua.Key{PresURI: pres, Event: "presence", ID: "usrloc"}
			if err := s.Publish(pua.PublishRequest{Key: key, Body: presenceBody(pres, "t1", "open")}); err != nil {
				t.Fatal(err)
			}
			second := wait(t, w, has("<basic>open</basic>"))
			for _, n := range []sipphone.Notification{first, second} {
				if n.Transport != strings.ToUpper(tr) || n.Source != addrs[tr] {
					t.Fatalf("NOTIFY came over %s from %s, want %s from %s", n.Transport, n.Source, strings.ToUpper(tr), addrs[tr])
				}
			}
			if i == 0 {
				return
			}
			// The browser goes away: once the server has seen its
			// connection close, its NOTIFYs fail at once, without a
			// connection being dialled back to it. (A NOTIFY written
			// before the server reads the close would go into the
			// socket and fail only at its transaction's timeout.)
			var flow, flowTr string
			s.mu.Lock()
			for _, w := range s.subs {
				if w.presURI == pres {
					flow, flowTr = w.flow, w.flowTransport
				}
			}
			s.mu.Unlock()
			if flow == "" {
				t.Fatal("no subscription of " + pres)
			}
			before := testutil.ToFloat64(s.met.notifies.WithLabelValues(EventPresence, "error"))
			bob.Close()
			for n := 0; s.hasConnection(flowTr, flow); n++ {
				if n > 5000 {
					t.Fatal("the closed WebSocket still held by the server")
				}
				time.Sleep(time.Millisecond)
			}
			if err := s.Publish(pua.PublishRequest{Key: key, Body: presenceBody(pres, "t1", "closed")}); err != nil {
				t.Fatal(err)
			}
			for n := 0; testutil.ToFloat64(s.met.notifies.WithLabelValues(EventPresence, "error")) <= before; n++ {
				if n > 5000 {
					t.Fatal("NOTIFY to a closed WebSocket not counted as an error")
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}

func port(t *testing.T, hostport string) int {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", hostport)
	if err != nil {
		t.Fatal(err)
	}
	return a.Port
}

// TestSIPSRequiresTLS: a sips: Request-URI or watcher is refused over UDP
// and WS with 403 saying why, and accepted over WSS and TLS.
func TestSIPSRequiresTLS(t *testing.T) {
	s, addrs, tc := startSecure(t, DefaultConfig(), Options{})
	ctx := context.Background()
	udp := sipphone.NewPhone(t, "bob", "example.com")
	_, err := udp.Watch(ctx, addrs["udp"], uri("sips:alice@example.com"), "presence", sipphone.WatchOptions{})
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("sips: over UDP: %v, want 403", err)
	}
	ws := sipphone.NewFlowPhone(t, "bob", "example.com", "ws", nil)
	if _, err := ws.Watch(ctx, addrs["ws"], uri("sips:alice@example.com"), "presence", sipphone.WatchOptions{}); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("sips: over WS: %v, want 403", err)
	}
	// A sips: watcher (From) over UDP, by hand.
	req := sip.NewRequest(sip.SUBSCRIBE, uri("sip:alice@example.com"))
	req.AppendHeader(&sip.FromHeader{Address: uri("sips:carol@example.com"), Params: tagged("f1")})
	req.AppendHeader(&sip.ToHeader{Address: uri("sip:alice@example.com"), Params: sip.NewParams()})
	req.AppendHeader(&sip.ContactHeader{Address: uri("sip:carol@" + udp.Addr())})
	req.AppendHeader(sip.NewHeader("Event", "presence"))
	res, err := udp.Request(ctx, addrs["udp"], req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 403 || !strings.Contains(res.Reason, "sips") {
		t.Fatalf("sips: watcher over UDP: %d %s, want 403 naming sips:", res.StatusCode, res.Reason)
	}
	if got := testutil.ToFloat64(s.met.subscribes.WithLabelValues(EventPresence, "403")); got != 3 {
		t.Fatalf("403s counted: %v, want 3", got)
	}
	for _, tr := range []string{"wss", "tls"} {
		p := sipphone.NewFlowPhone(t, "bob", "example.com", tr, tc)
		w, err := p.Watch(ctx, addrs[tr], uri("sips:alice@example.com"), "presence", sipphone.WatchOptions{})
		if err != nil {
			t.Fatalf("sips: over %s: %v", tr, err)
		}
		wait(t, w, has("<basic>closed</basic>"))
	}
}

// rawWS opens a TCP connection to a ws: listener and sends the upgrade
// request and then frames.
func rawWS(t *testing.T, addr string, frames ...[]byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	msg := []byte("GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n\r\n")
	for _, f := range frames {
		msg = append(msg, f...)
	}
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	return c
}

// wsFrame is a masked text frame header announcing n payload bytes,
// followed by payload.
func wsFrame(n uint64, payload []byte) []byte {
	var h []byte
	switch {
	case n < 126:
		h = []byte{0x81, 0x80 | byte(n)}
	case n <= 0xffff:
		h = []byte{0x81, 0x80 | 126, byte(n >> 8), byte(n)}
	default:
		h = []byte{0x81, 0x80 | 127, byte(n >> 56), byte(n >> 48), byte(n >> 40), byte(n >> 32), byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	}
	h = append(h, 0, 0, 0, 0) // a zero mask leaves the payload as it is
	return append(h, payload...)
}

// waitDropped waits until reason was counted n times.
func waitDropped(t *testing.T, s *Server, reason string, n float64) {
	t.Helper()
	for i := 0; testutil.ToFloat64(s.met.wsDropped.WithLabelValues(reason)) < n; i++ {
		if i > 10000 {
			t.Fatalf("%s drops: %v, want %v", reason, testutil.ToFloat64(s.met.wsDropped.WithLabelValues(reason)), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWebSocketBounds: a stalled handshake, an oversized frame, a frame
// flood and a binary frame each cost one disconnection, counted by
// reason, and the server keeps serving watchers meanwhile.
func TestWebSocketBounds(t *testing.T) {
	cfg := DefaultConfig()
	cfg.WebSocket.HandshakeTimeout = 300 * time.Millisecond
	cfg.WebSocket.MaxFramesPerSecond = 1000
	s, addrs, tc := startSecure(t, cfg, Options{})

	// Stall a ws: and a wss: handshake, then subscribe over both.
	for _, tr := range []string{"ws", "wss"} {
		c, err := net.Dial("tcp", addrs[tr])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	for _, tr := range []string{"ws", "wss"} {
		p := sipphone.NewFlowPhone(t, "bob", "example.com", tr, tc)
		w, err := p.Watch(context.Background(), addrs[tr], uri("sip:alice@example.com"), "presence", sipphone.WatchOptions{})
		if err != nil {
			t.Fatalf("%s watcher behind a stalled handshake: %v", tr, err)
		}
		wait(t, w, has("<basic>closed</basic>"))
	}
	waitDropped(t, s, wsguard.ReasonHandshakeTimeout, 2)

	// An oversized frame: announced 1 TiB, nothing allocated, dropped.
	rawWS(t, addrs["ws"], wsFrame(1<<40, nil))
	waitDropped(t, s, wsguard.ReasonFrameTooLarge, 1)
	// One byte above max_frame_size.
	rawWS(t, addrs["ws"], wsFrame(uint64(cfg.WebSocket.MaxFrameSize+1), nil))
	waitDropped(t, s, wsguard.ReasonFrameTooLarge, 2)

	// A flood of keepalive frames, well above the 1000 a second allowed.
	var flood []byte
	for range 5000 {
		flood = append(flood, wsFrame(2, []byte("\r\n"))...)
	}
	rawWS(t, addrs["ws"], flood)
	waitDropped(t, s, wsguard.ReasonFlood, 1)

	// A binary frame (which sipgo would drop without a word).
	bin := wsFrame(3, []byte("abc"))
	bin[0] = 0x82
	rawWS(t, addrs["ws"], bin)
	waitDropped(t, s, wsguard.ReasonBinary, 1)

	// Still serving.
	p := sipphone.NewFlowPhone(t, "carol", "example.com", "wss", tc)
	w, err := p.Watch(context.Background(), addrs["wss"], uri("sip:alice@example.com"), "presence", sipphone.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wait(t, w, has("<basic>closed</basic>"))
}

func TestListenTransportsValidate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listen = []string{"wss:127.0.0.1:0"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "tls.cert_file") {
		t.Fatalf("wss: without a certificate: %v", err)
	}
	cfg.Listen = []string{"sctp:127.0.0.1:0"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "udp, tcp, tls, ws or wss") {
		t.Fatalf("sctp: %v", err)
	}
	cfg = DefaultConfig()
	cfg.WebSocket.MaxFrameSize = 1 << 20
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "websocket.max_frame_size") {
		t.Fatalf("max_frame_size 1 MiB: %v", err)
	}
}
