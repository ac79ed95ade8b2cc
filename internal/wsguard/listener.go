package wsguard

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/puaside/puaside/clock"
)

// Limits bound what one WebSocket client may cost.
type Limits struct {
	// HandshakeTimeout bounds the TLS handshake (wss) and the HTTP upgrade
	// request together.
	HandshakeTimeout time.Duration
	// MaxHandshakeBytes bounds the HTTP upgrade request.
	MaxHandshakeBytes int
	// MaxPending bounds the handshakes running at once; a connection
	// above it is closed at once.
	MaxPending int
	// MaxFrameSize bounds a text frame's payload (one SIP message).
	MaxFrameSize int
	// FramesPerSecond is the rate of frames a connection may send, with a
	// burst of as many; 0 means no limit.
	FramesPerSecond int
}

// Options are the listener's collaborators.
type Options struct {
	// TLS, when set, makes the listener wss: each connection is a TLS
	// server connection with this configuration.
	TLS *tls.Config
	// Clock drives the frame rate limit; nil is the wall clock.
	Clock clock.Clock
	// OnDrop is told every connection the guard closes, with the reason
	// (a Reason constant); nil tells no one.
	OnDrop func(reason string, remote net.Addr, err error)
}

// Listener accepts connections of inner, runs their TLS handshake (wss)
// and reads their HTTP upgrade request in a goroutine of their own under
// HandshakeTimeout, then hands them to Accept with the request to be read
// again and every later frame checked.
type Listener struct {
	inner net.Listener
	lim   Limits
	o     Options
	clk   clock.Clock

	conns   chan net.Conn
	closed  chan struct{}
	once    sync.Once
	pending atomic.Int64

	errMu sync.Mutex
	err   error // the inner Accept's error, when it ended the listener
}

// NewListener starts accepting on inner.
func NewListener(inner net.Listener, lim Limits, o Options) *Listener {
	l := &Listener{inner: inner, lim: lim, o: o, clk: clock.OrReal(o.Clock),
		conns: make(chan net.Conn), closed: make(chan struct{})}
	go l.run()
	return l
}

func (l *Listener) run() {
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.errMu.Lock()
			l.err = err
			l.errMu.Unlock()
			l.Close()
			return
		}
		if l.pending.Add(1) > int64(l.lim.MaxPending) {
			l.pending.Add(-1)
			c.Close()
			l.dropped(ReasonTooManyPending, c.RemoteAddr(), drop(ReasonTooManyPending, "%d handshakes running", l.lim.MaxPending))
			continue
		}
		go l.handshake(c)
	}
}

func (l *Listener) dropped(reason string, remote net.Addr, err error) {
	if l.o.OnDrop != nil {
		l.o.OnDrop(reason, remote, err)
	}
}

// handshake runs one connection's TLS handshake and reads its upgrade
// request, then hands it over.
func (l *Listener) handshake(c net.Conn) {
	defer l.pending.Add(-1)
	fail := func(reason string, err error) {
		c.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
			reason = ReasonHandshakeTimeout
		}
		l.dropped(reason, c.RemoteAddr(), err)
	}
	_ = c.SetDeadline(time.Now().Add(l.lim.HandshakeTimeout)) // a failure shows as the handshake not ending
	conn := c
	if l.o.TLS != nil {
		tc := tls.Server(c, l.o.TLS)
		ctx, cancel := context.WithTimeout(context.Background(), l.lim.HandshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			fail(ReasonHandshakeTLS, err)
			return
		}
		conn = tc
	}
	req, rest, err := readRequest(conn, l.lim.MaxHandshakeBytes)
	if err != nil {
		fail(ReasonOf(err), err)
		return
	}
	_ = conn.SetDeadline(time.Time{})
	g := &conn2{Conn: conn, pre: req, rest: rest, l: l}
	g.scan = frameScanner{maxFrame: uint64(l.lim.MaxFrameSize), onFrame: g.take}
	if l.lim.FramesPerSecond > 0 {
		g.tokens, g.at = float64(l.lim.FramesPerSecond), l.clk.Now()
	}
	select {
	case l.conns <- g:
	case <-l.closed:
		conn.Close()
	}
}

// readRequest reads an HTTP request header (up to the blank line) of at
// most max bytes. rest is what was read past it.
func readRequest(c net.Conn, max int) (req, rest []byte, err error) {
	buf := make([]byte, 0, 1024)
	for {
		if len(buf) >= 4 && !bytes.HasPrefix(buf, []byte("GET ")) {
			return nil, nil, drop(ReasonHandshakeInvalid, "not an HTTP GET request: %q", buf[:4])
		}
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			return buf[:i+4], buf[i+4:], nil
		}
		if len(buf) >= max {
			return nil, nil, drop(ReasonHandshakeLarge, "upgrade request above %d bytes", max)
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := c.Read(buf[len(buf):min(cap(buf), max)])
		buf = buf[:len(buf)+n]
		if err != nil && n == 0 {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, nil, drop(ReasonHandshakeTimeout, "upgrade request not received in time: %v", err)
			}
			return nil, nil, drop(ReasonHandshakeInvalid, "connection ended during the upgrade request: %v", err)
		}
	}
}

// Accept returns the next connection whose upgrade request is read.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		l.errMu.Lock()
		defer l.errMu.Unlock()
		if l.err != nil && !errors.Is(l.err, net.ErrClosed) {
			return nil, l.err
		}
		return nil, net.ErrClosed
	}
}

// Close stops accepting; handshakes in progress are abandoned.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		err = l.inner.Close()
		close(l.closed)
	})
	return err
}

// Addr is the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Pending reports the handshakes in progress.
func (l *Listener) Pending() int { return int(l.pending.Load()) }

// conn2 is a connection past its handshake: the upgrade request is read
// again, then every frame is checked before the bytes are passed on.
type conn2 struct {
	net.Conn
	l         *Listener
	pre, rest []byte
	scan      frameScanner
	tokens    float64
	at        time.Time
	failed    error
}

// take spends one frame of the rate limit.
func (c *conn2) take() error {
	rate := float64(c.l.lim.FramesPerSecond)
	if rate <= 0 {
		return nil
	}
	now := c.l.clk.Now()
	c.tokens = min(rate, c.tokens+now.Sub(c.at).Seconds()*rate)
	c.at = now
	if c.tokens < 1 {
		return drop(ReasonFlood, "more than %d frames a second", c.l.lim.FramesPerSecond)
	}
	c.tokens--
	return nil
}

// Read passes on the upgrade request, then checked frame bytes.
func (c *conn2) Read(b []byte) (int, error) {
	if c.failed != nil {
		return 0, c.failed
	}
	if len(c.pre) > 0 {
		n := copy(b, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	var n int
	var err error
	if len(c.rest) > 0 {
		n = copy(b, c.rest)
		c.rest = c.rest[n:]
	} else {
		n, err = c.Conn.Read(b)
	}
	if n > 0 {
		if serr := c.scan.scan(b[:n]); serr != nil {
			c.failed = serr
			c.Conn.Close()
			c.l.dropped(ReasonOf(serr), c.RemoteAddr(), serr)
			return 0, serr
		}
	}
	return n, err
}
