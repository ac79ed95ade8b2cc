package kamailiotest

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/internal/sipphone"
)

// mirror is a UDP socket standing in for puaside's replicate, trace or HEP
// listener: it records every datagram and, when answer is set, answers
// each SIP request with a stateless 200 as puaside does on replicate_listen.
type mirror struct {
	conn   net.PacketConn
	answer bool

	mu      sync.Mutex
	packets [][]byte
	changed chan struct{}
}

func newMirror(t *testing.T, answer bool) *mirror {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &mirror{conn: conn, answer: answer, changed: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			b := append([]byte(nil), buf[:n]...)
			if m.answer {
				if req, err := sip.ParseMessage(b); err == nil {
					if r, ok := req.(*sip.Request); ok && !r.IsAck() {
						res := sip.NewResponseFromRequest(r, 200, "OK", nil)
						_, _ = conn.WriteTo([]byte(res.String()), from)
					}
				}
			}
			m.mu.Lock()
			m.packets = append(m.packets, b)
			close(m.changed)
			m.changed = make(chan struct{})
			m.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return m
}

func (m *mirror) uri() string { return "sip:" + m.conn.LocalAddr().String() }

// waitSIP waits until a received message (after unwrap) satisfies match.
func (m *mirror) waitSIP(ctx context.Context, t *testing.T, what string, unwrap func([]byte) []byte, match func(sip.Message) bool) sip.Message {
	t.Helper()
	for {
		m.mu.Lock()
		pkts, ch := m.packets, m.changed
		m.mu.Unlock()
		for _, p := range pkts {
			b := p
			if unwrap != nil {
				b = unwrap(p)
			}
			if msg, err := sip.ParseMessage(b); err == nil && match(msg) {
				return msg
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("no %s among %d mirrored packets: %v", what, len(pkts), ctx.Err())
		}
	}
}

func isReq(method sip.RequestMethod) func(sip.Message) bool {
	return func(m sip.Message) bool {
		r, ok := m.(*sip.Request)
		return ok && r.Method == method
	}
}

func isRes(code int, method sip.RequestMethod) func(sip.Message) bool {
	return func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		return ok && r.StatusCode == code && r.CSeq() != nil && r.CSeq().MethodName == method
	}
}

func startRegistrar(t *testing.T, defines map[string]string) *Instance {
	return Start(t, Options{Config: ConfigPath(t, "registrar.cfg"), Defines: defines, Workers: 2})
}

func register(ctx context.Context, t *testing.T, ph *sipphone.Phone, reg *Instance) {
	t.Helper()
	res, err := ph.Register(ctx, reg.Addr(), 60)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 {
		t.Fatalf("REGISTER %s: %d %s", ph.User, res.StatusCode, res.Reason)
	}
}

func TestRegistrarReplicate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m := newMirror(t, true)
	reg := startRegistrar(t, map[string]string{"WITH_REPLICATE": "", "PUASIDE_REPLICATE_URI": Str(m.uri())})
	alice := sipphone.NewPhone(t, "alice", domain)
	register(ctx, t, alice, reg)

	msg := m.waitSIP(ctx, t, "REGISTER copy", nil, isReq(sip.REGISTER))
	req := msg.(*sip.Request)
	if c := req.Contact(); c == nil || c.Address.Port != alice.ContactURI("alice").Port {
		t.Errorf("copy Contact %v, want alice's %s", req.Contact(), alice.Addr())
	}
	if v := req.Via(); v == nil || v.Port != reg.Port() {
		t.Errorf("copy top Via %v, want the registrar's port %d", req.Via(), reg.Port())
	}

	// Calls still work (and are not replicated).
	bob := sipphone.NewPhone(t, "bob", domain)
	register(ctx, t, bob, reg)
	bob.SetPolicy(sipphone.RejectWith(486))
	call, err := alice.Invite(ctx, reg.Addr(), uri("bob"))
	if err != nil {
		t.Fatal(err)
	}
	if err := call.WaitAnswer(ctx); err == nil || call.Code() != 486 {
		t.Fatalf("call to busy bob: err %v code %d, want 486", err, call.Code())
	}
}

func TestRegistrarSiptrace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m := newMirror(t, false)
	reg := startRegistrar(t, map[string]string{"WITH_SIPTRACE": "", "PUASIDE_TRACE_URI": Str(m.uri())})
	alice := sipphone.NewPhone(t, "alice", domain)
	bob := sipphone.NewPhone(t, "bob", domain)
	register(ctx, t, alice, reg)
	register(ctx, t, bob, reg)
	m.waitSIP(ctx, t, "traced REGISTER", nil, isReq(sip.REGISTER))
	m.waitSIP(ctx, t, "traced 200 to REGISTER", nil, isRes(200, sip.REGISTER))

	call, err := alice.Invite(ctx, reg.Addr(), uri("bob"))
	if err != nil {
		t.Fatal(err)
	}
	if err := call.WaitAnswer(ctx); err != nil {
		t.Fatalf("call alice→bob: %v", err)
	}
	if err := call.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	m.waitSIP(ctx, t, "traced INVITE", nil, isReq(sip.INVITE))
	m.waitSIP(ctx, t, "traced 200 to INVITE", nil, isRes(200, sip.INVITE))
	m.waitSIP(ctx, t, "traced ACK", nil, isReq(sip.ACK))
	m.waitSIP(ctx, t, "traced BYE", nil, isReq(sip.BYE))
	m.waitSIP(ctx, t, "traced 200 to BYE", nil, isRes(200, sip.BYE))

	// A cancelled call.
	bob.SetPolicy(sipphone.KeepRinging)
	call, err = alice.Invite(ctx, reg.Addr(), uri("bob"))
	if err != nil {
		t.Fatal(err)
	}
	var in *sipphone.IncomingCall
	for in == nil {
		select {
		case ic := <-bob.Incoming():
			if ic.Request.CallID().Value() == call.CallID() {
				in = ic
			}
		case <-ctx.Done():
			t.Fatal("bob did not ring")
		}
	}
	if err := call.Cancel(ctx); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	<-in.Done()
	if in.Code() != 487 {
		t.Errorf("callee final %d, want 487", in.Code())
	}
	m.waitSIP(ctx, t, "traced CANCEL", nil, isReq(sip.CANCEL))
	m.waitSIP(ctx, t, "traced 487", nil, isRes(487, sip.INVITE))
}

// hepPayload returns the SIP payload (chunk type 15) of a HEPv3 packet, or
// nil when p is not HEPv3.
func hepPayload(p []byte) []byte {
	if len(p) < 6 || !bytes.Equal(p[:4], []byte("HEP3")) {
		return nil
	}
	total := int(binary.BigEndian.Uint16(p[4:6]))
	if total > len(p) {
		return nil
	}
	for off := 6; off+6 <= total; {
		vendor := binary.BigEndian.Uint16(p[off:])
		typ := binary.BigEndian.Uint16(p[off+2:])
		l := int(binary.BigEndian.Uint16(p[off+4:]))
		if l < 6 || off+l > total {
			return nil
		}
		if vendor == 0 && typ == 15 {
			return p[off+6 : off+l]
		}
		off += l
	}
	return nil
}

func TestRegistrarHEP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m := newMirror(t, false)
	reg := startRegistrar(t, map[string]string{"WITH_HEP": "", "PUASIDE_HEP_URI": Str(m.uri())})
	alice := sipphone.NewPhone(t, "alice", domain)
	register(ctx, t, alice, reg)
	msg := m.waitSIP(ctx, t, "HEPv3 REGISTER", hepPayload, isReq(sip.REGISTER))
	if !strings.Contains(msg.String(), "sip:alice@") {
		t.Errorf("HEP REGISTER payload:\n%s", msg.String())
	}
	m.waitSIP(ctx, t, "HEPv3 200 to REGISTER", hepPayload, isRes(200, sip.REGISTER))
}
