package puaxmpp

import (
	"context"
	"encoding/xml"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"
)

// limitConn is the connection to the XMPP server with a budget of bytes
// per stanza: the handler resets it at each stanza, a read past it fails
// (and so ends the session) instead of buffering a huge stanza.
type limitConn struct {
	net.Conn
	budget int64
	used   atomic.Int64
}

func (c *limitConn) Read(b []byte) (int, error) {
	if c.used.Load() > c.budget {
		return 0, fmt.Errorf("%w: a stanza larger than max_stanza_size", ErrHostile)
	}
	n, err := c.Conn.Read(b)
	c.used.Add(int64(n))
	return n, err
}

func (c *limitConn) reset() { c.used.Store(0) }

// RegisterMetrics adds the connection gauge (puaside_xmpp_connected) to
// the metrics registry; call it once.
func (g *Gateway) RegisterMetrics() error {
	if g.m == nil {
		return nil
	}
	gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: "puaside_xmpp_connected",
		Help: "1 while the XMPP gateway has a session with the XMPP server, 0 while it is disconnected."})
	if err := g.m.Register(gauge); err != nil {
		return fmt.Errorf("puaxmpp: %w", err)
	}
	g.status = func(up bool) {
		if up {
			gauge.Set(1)
		} else {
			gauge.Set(0)
		}
	}
	return nil
}

func (g *Gateway) addr() string {
	return net.JoinHostPort(g.cfg.XMPPHost, strconv.Itoa(g.cfg.XMPPPort))
}

// Run connects to the XMPP server and serves the session until ctx ends,
// reconnecting with backoff (reconnect_min doubling to reconnect_max, with
// jitter) whenever the session fails or the server goes away.
func (g *Gateway) Run(ctx context.Context) error {
	wait := g.cfg.ReconnectMin
	for {
		start := g.clock.Now()
		err := g.serve(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if g.clock.Now().Sub(start) > 30*time.Second {
			wait = g.cfg.ReconnectMin
		}
		d := wait/2 + rand.N(wait/2+1)
		g.count("disconnected")
		g.log.Warn("xmpp: not connected to the XMPP server", "server", g.addr(), "err", err, "retry_in", d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, g.cfg.ReconnectMax)
	}
}

// serve runs one session: dial, XEP-0114 handshake, resynchronisation,
// then stanzas until the session ends.
func (g *Gateway) serve(ctx context.Context) error {
	dial := g.opts.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	raw, err := dial(dctx, "tcp", g.addr())
	if err != nil {
		return fmt.Errorf("puaxmpp: dial: %w", err)
	}
	conn := &limitConn{Conn: raw, budget: int64(g.cfg.MaxStanzaSize) + 8192}
	stop := context.AfterFunc(ctx, func() { _ = raw.Close() })
	defer stop()
	comp, err := jid.Parse(g.cfg.XMPPDomain)
	if err != nil {
		_ = raw.Close()
		return fmt.Errorf("puaxmpp: %w", err)
	}
	sess, err := component.NewSession(dctx, comp, []byte(g.cfg.XMPPPassword), conn)
	if err != nil {
		_ = raw.Close()
		return fmt.Errorf("puaxmpp: handshake with %s as %s: %w", g.addr(), comp, err)
	}
	conn.reset()
	g.mu.Lock()
	g.out = func(ctx context.Context, o outPresence) error {
		// mellium's Encode watches ctx in a goroutine that, once ctx is
		// done, sets a write deadline in the past on the connection; when
		// the caller cancels ctx right after a send returns, that can land
		// in the next send and fail it with an i/o timeout. So Encode gets
		// a context that is never done, and a send outliving ctx closes
		// the connection instead (Serve then fails and the gateway
		// reconnects).
		stop := context.AfterFunc(ctx, func() { _ = sess.Conn().Close() })
		defer stop()
		return sess.Encode(context.WithoutCancel(ctx), o)
	}

	g.connects++
	g.mu.Unlock()
	g.status(true)
	g.count("connected")
	g.log.Info("xmpp: connected to the XMPP server", "server", g.addr(), "domain", comp.String())
	defer func() {
		g.mu.Lock()
		g.out = nil
		g.mu.Unlock()
		g.status(false)
		_ = sess.Close()
		_ = raw.Close()
	}()
	go g.resync(ctx)
	err = sess.Serve(xmpp.HandlerFunc(func(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		conn.reset()
		g.handleStanza(ctx, t, start)
		return nil
	}))
	if err == nil {
		err = fmt.Errorf("puaxmpp: the XMPP server closed the stream")
	}
	return err
}

// handleStanza reads one stanza. Presence is applied; an IQ is answered
// service-unavailable by the session; anything else is counted and
// dropped.
func (g *Gateway) handleStanza(ctx context.Context, t xml.TokenReader, start *xml.StartElement) {
	switch start.Name.Local {
	case "presence":
		p, err := readPresence(*start, t, g.cfg.MaxStanzaDepth)
		if err != nil {
			g.refuse("bad_stanza", err)
			return
		}
		g.handlePresence(ctx, p)
	case "iq":
		g.count("received_iq")
	case "message":
		g.count("received_message")
	default:
		g.refuse("unknown_stanza", fmt.Errorf("%w: <%s>", ErrHostile, clipText(start.Name.Local, 64)))
	}
}
