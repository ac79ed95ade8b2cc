package wsguard

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/puaside/puaside/clock/clocktest"
)

const upgrade = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n\r\n"

// frame builds a masked client frame with the given first byte and a
// payload length (the payload itself is n zero bytes when body is true).
func frame(b0 byte, n uint64, body bool) []byte {
	var h []byte
	switch {
	case n < 126:
		h = []byte{b0, 0x80 | byte(n)}
	case n <= 0xffff:
		h = []byte{b0, 0x80 | 126, 0, 0}
		binary.BigEndian.PutUint16(h[2:], uint16(n))
	default:
		h = []byte{b0, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint64(h[2:], n)
	}
	h = append(h, 1, 2, 3, 4) // mask
	if body {
		h = append(h, make([]byte, n)...)
	}
	return h
}

type drops struct {
	mu      sync.Mutex
	reasons []string
	ch      chan string
}

func newDrops() *drops { return &drops{ch: make(chan string, 64)} }

func (d *drops) on(reason string, _ net.Addr, _ error) {
	d.mu.Lock()
	d.reasons = append(d.reasons, reason)
	d.mu.Unlock()
	d.ch <- reason
}

func (d *drops) wait(t *testing.T) string {
	t.Helper()
	select {
	case r := <-d.ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no connection dropped")
		return ""
	}
}

func limits() Limits {
	return Limits{HandshakeTimeout: 5 * time.Second, MaxHandshakeBytes: 4096, MaxPending: 8, MaxFrameSize: 1000, FramesPerSecond: 10}
}

func listen(t *testing.T, lim Limits, o Options) *Listener {
	t.Helper()
	in, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(in, lim, o)
	t.Cleanup(func() { l.Close() })
	return l
}

func dial(t *testing.T, l *Listener, send []byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if len(send) > 0 {
		if _, err := c.Write(send); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func accept(t *testing.T, l *Listener) net.Conn {
	t.Helper()
	type r struct {
		c   net.Conn
		err error
	}
	ch := make(chan r, 1)
	go func() { c, err := l.Accept(); ch <- r{c, err} }()
	select {
	case x := <-ch:
		if x.err != nil {
			t.Fatal(x.err)
		}
		t.Cleanup(func() { x.c.Close() })
		return x.c
	case <-time.After(10 * time.Second):
		t.Fatal("nothing accepted")
		return nil
	}
}

// readAll reads c until it fails, returning the bytes and the error.
func readAll(c net.Conn) ([]byte, error) {
	var out []byte
	buf := make([]byte, 512)
	for {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out, err
		}
	}
}

func TestGoodFramesPassThrough(t *testing.T) {
	d := newDrops()
	l := listen(t, limits(), Options{OnDrop: d.on, Clock: clocktest.New(time.Unix(0, 0))})
	msg := append([]byte(upgrade), frame(0x81, 300, true)...)
	msg = append(msg, frame(0x88, 2, true)...) // close with a status code
	c := dial(t, l, msg)
	s := accept(t, l)
	c.Close()
	got, err := readAll(s)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("read ended with %v, want EOF", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("read %d bytes, want the %d sent", len(got), len(msg))
	}
	if len(d.reasons) != 0 {
		t.Fatalf("dropped: %v", d.reasons)
	}
}

func TestRefusedFrames(t *testing.T) {
	for _, tc := range []struct {
		name, reason string
		frame        []byte
	}{
		{"oversized", ReasonFrameTooLarge, frame(0x81, 1001, false)},
		{"huge length, no allocation", ReasonFrameTooLarge, frame(0x81, 1<<40, false)},
		{"binary", ReasonBinary, frame(0x82, 10, true)},
		{"fragmented", ReasonFragmented, frame(0x01, 10, true)},
		{"continuation", ReasonFragmented, frame(0x80, 10, true)},
		{"ping with payload", ReasonControlPayload, frame(0x89, 4, true)},
		{"unmasked", ReasonInvalidFrame, []byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'}},
		{"reserved bits", ReasonInvalidFrame, frame(0xc1, 1, true)},
		{"reserved opcode", ReasonInvalidFrame, frame(0x83, 1, true)},
		{"long control frame", ReasonInvalidFrame, frame(0x88, 126, true)},
		{"top bit length", ReasonInvalidFrame, append([]byte{0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0}, 1, 2, 3, 4)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDrops()
			l := listen(t, limits(), Options{OnDrop: d.on, Clock: clocktest.New(time.Unix(0, 0))})
			good := frame(0x81, 20, true)
			dial(t, l, append(append([]byte(upgrade), good...), tc.frame...))
			s := accept(t, l)
			_, err := readAll(s)
			if ReasonOf(err) != tc.reason {
				t.Fatalf("read ended with %v, want reason %s", err, tc.reason)
			}
			if r := d.wait(t); r != tc.reason {
				t.Fatalf("dropped for %s, want %s", r, tc.reason)
			}
		})
	}
}

func TestFrameFlood(t *testing.T) {
	d := newDrops()
	clk := clocktest.New(time.Unix(0, 0))
	l := listen(t, limits(), Options{OnDrop: d.on, Clock: clk})
	var msg []byte
	for range 10 {
		msg = append(msg, frame(0x81, 2, true)...)
	}
	c := dial(t, l, append([]byte(upgrade), msg...))
	s := accept(t, l)
	got := make([]byte, len(upgrade)+len(msg))
	if _, err := io.ReadFull(s, got); err != nil {
		t.Fatalf("the first 10 frames (the burst): %v", err)
	}
	clk.Advance(time.Second / 2) // 5 more frames allowed
	var more []byte
	for range 6 {
		more = append(more, frame(0x81, 2, true)...)
	}
	if _, err := c.Write(more); err != nil {
		t.Fatal(err)
	}
	_, err := readAll(s)
	if ReasonOf(err) != ReasonFlood {
		t.Fatalf("read ended with %v, want %s", err, ReasonFlood)
	}
	if r := d.wait(t); r != ReasonFlood {
		t.Fatalf("dropped for %s", r)
	}
}

func TestSlowHandshakeDoesNotBlockOthers(t *testing.T) {
	d := newDrops()
	lim := limits()
	lim.HandshakeTimeout = 300 * time.Millisecond
	l := listen(t, lim, Options{OnDrop: d.on})
	dial(t, l, []byte("GET / HT")) // stalls
	dial(t, l, []byte(upgrade))
	s := accept(t, l)
	buf := make([]byte, len(upgrade))
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != upgrade {
		t.Fatalf("second client: %q, %v", buf, err)
	}
	if r := d.wait(t); r != ReasonHandshakeTimeout {
		t.Fatalf("stalled client dropped for %s, want %s", r, ReasonHandshakeTimeout)
	}
}

func TestHandshakeLimits(t *testing.T) {
	for _, tc := range []struct {
		name, reason, send string
	}{
		{"too large", ReasonHandshakeLarge, "GET / HTTP/1.1\r\n" + string(bytes.Repeat([]byte("X-Pad: 0123456789\r\n"), 400))},
		{"not http", ReasonHandshakeInvalid, "REGISTER sip:x SIP/2.0\r\n\r\n"},
		{"closed early", ReasonHandshakeInvalid, "GET / HTTP/1.1\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDrops()
			l := listen(t, limits(), Options{OnDrop: d.on})
			c := dial(t, l, []byte(tc.send))
			if tc.name == "closed early" {
				c.(*net.TCPConn).CloseWrite()
			}
			if r := d.wait(t); r != tc.reason {
				t.Fatalf("dropped for %s, want %s", r, tc.reason)
			}
		})
	}
}

func TestTooManyPendingHandshakes(t *testing.T) {
	d := newDrops()
	lim := limits()
	lim.MaxPending = 2
	l := listen(t, lim, Options{OnDrop: d.on})
	dial(t, l, nil)
	dial(t, l, nil)
	for i := 0; l.Pending() < 2; i++ {
		if i > 10000 {
			t.Fatal("handshakes not started")
		}
		time.Sleep(time.Millisecond)
	}
	c := dial(t, l, nil)
	if r := d.wait(t); r != ReasonTooManyPending {
		t.Fatalf("dropped for %s, want %s", r, ReasonTooManyPending)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("third connection: %v, want it closed", err)
	}
}
