package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/bla"
	"github.com/puaside/puaside/internal/kamailiotest"
	"github.com/puaside/puaside/internal/testpki"
)

// tlsPhone is a shared-line phone that registers over TLS (or TCP,
// dialTCPPhone) and takes every request on that one connection (it listens
// nowhere: its Contact port is closed, as a phone behind NAT or on an
// outbound TLS flow is unreachable except through the connection it
// opened).
type tlsPhone struct {
	t       *testing.T
	conn    net.Conn
	via     string // the Via transport: TLS or TCP
	contact string
	// regParams are appended to the REGISTER's Contact (";reg-id=1;..."),
	// regHeaders are extra REGISTER header lines, each ending in CRLF.
	regParams, regHeaders string
	regRes                *sip.Response // the last final reply to REGISTER
	mu                    sync.Mutex
	resps                 chan *sip.Response
	subs                  []*sip.Request
	toTag                 string // of our 200 to the first SUBSCRIBE
	got                   chan *sip.Request
}

func dialTLSPhone(t *testing.T, addr string, ca *testpki.CA, contactPort int) *tlsPhone {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("phone: TLS to the registrar: %v", err)
	}
	return newFlowPhone(t, c, "TLS", contactPort)
}

// dialTCPPhone connects the phone to addr over TCP; its Contact names
// contactPort, where nothing listens.
func dialTCPPhone(t *testing.T, addr string, contactPort int) *tlsPhone {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("phone: TCP to %s: %v", addr, err)
	}
	return newFlowPhone(t, c, "TCP", contactPort)
}

func newFlowPhone(t *testing.T, c net.Conn, via string, contactPort int) *tlsPhone {
	p := &tlsPhone{t: t, conn: c, via: via, resps: make(chan *sip.Response, 8), got: make(chan *sip.Request, 8),
		contact: fmt.Sprintf("sip:line100@127.0.0.1:%d;transport=%s", contactPort, strings.ToLower(via))}
	t.Cleanup(func() { c.Close() })
	go p.read()
	return p
}

// read parses what arrives on the connection: responses go to resps,
// SUBSCRIBEs are answered 200 and kept.
func (p *tlsPhone) read() {
	ps := sip.NewParser().NewSIPStream()
	buf := make([]byte, 65535)
	for {
		n, err := p.conn.Read(buf)
		if err != nil {
			return
		}
		_ = ps.ParseSIPStream(buf[:n], func(m sip.Message) {
			switch m := m.(type) {
			case *sip.Response:
				p.resps <- m
			case *sip.Request:
				res := sip.NewResponseFromRequest(m, 200, "OK", nil)
				if m.Method == sip.SUBSCRIBE {
					res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "line100", Host: "127.0.0.1"}})
					res.AppendHeader(sip.NewHeader("Expires", headerOr(m, "Expires", "300")))
					p.mu.Lock()
					p.subs = append(p.subs, m)
					if p.toTag == "" {
						p.toTag, _ = res.To().Params.Get("tag")
					}
					p.mu.Unlock()
				}
				_, _ = p.conn.Write([]byte(res.String()))
				select {
				case p.got <- m:
				default:
				}
			}
		})
	}
}

func headerOr(m interface{ GetHeader(string) sip.Header }, name, def string) string {
	if h := m.GetHeader(name); h != nil {
		return h.Value()
	}
	return def
}

// register sends REGISTER for the line over the TLS connection.
func (p *tlsPhone) register(ctx context.Context) int {
	p.t.Helper()
	la := p.conn.LocalAddr().(*net.TCPAddr)
	msg := fmt.Sprintf("REGISTER sip:example.com SIP/2.0\r\n"+
		"Via: SIP/2.0/%s 127.0.0.1:%d;branch=z9hG4bK-%s;rport\r\n"+
		"From: <sip:line100@example.com>;tag=%s\r\n"+
		"To: <sip:line100@example.com>\r\n"+
		"Call-ID: %s@127.0.0.1\r\n"+
		"CSeq: 1 REGISTER\r\n"+
		"Contact: <%s>%s\r\n"+
		"%s"+
		"Expires: 300\r\n"+
		"Max-Forwards: 70\r\n"+
		"User-Agent: PolycomVVX-emu\r\n"+
		"Content-Length: 0\r\n\r\n", p.via, la.Port, sip.GenerateTagN(10), sip.GenerateTagN(8), sip.GenerateTagN(12), p.contact, p.regParams, p.regHeaders)
	if _, err := p.conn.Write([]byte(msg)); err != nil {
		p.t.Fatalf("phone: write REGISTER: %v", err)
	}
	select {
	case r := <-p.resps:
		p.regRes = r
		return r.StatusCode
	case <-ctx.Done():
		p.t.Fatal("phone: no reply to REGISTER")
	}
	return 0
}

// notify sends a NOTIFY in the dialog of sub along its Record-Route (back
// through the registrar) and returns the final status.
func (p *tlsPhone) notify(ctx context.Context, sub *sip.Request, body string) int {
	p.t.Helper()
	p.mu.Lock()
	toTag := p.toTag
	p.mu.Unlock()
	fromTag, _ := sub.From().Params.Get("tag")
	var routes strings.Builder
	for _, h := range sub.GetHeaders("Record-Route") {
		fmt.Fprintf(&routes, "Route: %s\r\n", h.Value())
	}
	la := p.conn.LocalAddr().(*net.TCPAddr)
	msg := fmt.Sprintf("NOTIFY %s SIP/2.0\r\n"+
		"Via: SIP/2.0/%s 127.0.0.1:%d;branch=z9hG4bK-%s;rport\r\n"+
		"%s"+
		"From: <%s>;tag=%s\r\n"+
		"To: <%s>;tag=%s\r\n"+
		"Call-ID: %s\r\n"+
		"CSeq: 1 NOTIFY\r\n"+
		"Contact: <%s>\r\n"+
		"Event: %s\r\n"+
		"Subscription-State: active;expires=300\r\n"+
		"Content-Type: application/dialog-info+xml\r\n"+
		"Max-Forwards: 70\r\n"+
		"Content-Length: %d\r\n\r\n%s",
		sub.Contact().Address.String(), p.via, la.Port, sip.GenerateTagN(10), routes.String(),
		sub.To().Address.String(), toTag, sub.From().Address.String(), fromTag, sub.CallID().Value(),
		p.contact, polSLA, len(body), body)
	if _, err := p.conn.Write([]byte(msg)); err != nil {
		p.t.Fatalf("phone: write NOTIFY: %v", err)
	}
	for {
		select {
		case r := <-p.resps:
			if r.CSeq() != nil && r.CSeq().MethodName == sip.NOTIFY && r.StatusCode >= 200 {
				return r.StatusCode
			}
		case <-ctx.Done():
			p.t.Fatal("phone: no final reply to NOTIFY")
			return 0
		}
	}
}

// TestBLAPhoneOverTLSThroughRegistrar: a shared-line phone registered over
// TLS (its Contact port closed) gets puaside's dialog;sla SUBSCRIBE over
// its own TLS connection: puaside sends it to the registrar (TLS, verified
// against the test's CA), which finds the phone's flow from its
// registration and never opens a new connection. The phone's NOTIFY, sent
// back on the same connection along the Record-Route, is published to the
// presence server.
func TestBLAPhoneOverTLSThroughRegistrar(t *testing.T) {
	ca := testpki.NewCA(t, "e2e CA")
	cert, key := ca.Valid(t, "127.0.0.1")
	f := testpki.WriteFiles(t, t.TempDir(), map[string][]byte{"cert.pem": cert, "key.pem": key, "ca.pem": ca.PEM})

	presence := presenceServer(t)
	cfg := baseConfig(t, presence)
	cfg.Features.Dialoginfo = false
	cfg.BLA.Lines = []bla.LineConfig{{AoR: blaLine}}
	cfg.BLA.ServerAddress = ""
	cfg.PUA.TLS.CAFile = f["ca.pem"]
	tlsPort := freePort(t)
	cfg.BLA.OutboundProxy = fmt.Sprintf("sip:127.0.0.1:%d;transport=tls", tlsPort)
	kamailiotest.Start(t, kamailiotest.Options{
		Config: kamailiotest.ConfigPath(t, "registrar.cfg"),
		Defines: map[string]string{
			"WITH_REPLICATE":        "",
			"PUASIDE_REPLICATE_URI": kamailiotest.Str("sip:" + hostPort(cfg.Ingest.ReplicateListen[0])),
			"WITH_TLS":              "",
			"TLS_PORT":              strconv.Itoa(tlsPort),
			"TLS_CONFIG":            kamailiotest.Str(kamailiotest.WriteTLSConfig(t, kamailiotest.TLSFiles{Cert: f["cert.pem"], Key: f["key.pem"]})),
		},
	})
	ps := startPuaside(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	phone := dialTLSPhone(t, fmt.Sprintf("127.0.0.1:%d", tlsPort), ca, freePort(t))
	if code := phone.register(ctx); code != 200 {
		t.Fatalf("REGISTER over TLS: %d", code)
	}
	var sub *sip.Request
	for sub == nil {
		select {
		case m := <-phone.got:
			if m.Method == sip.SUBSCRIBE {
				sub = m
			}
		case <-ctx.Done():
			t.Fatal("the phone never got a SUBSCRIBE on its TLS connection")
		}
	}
	if ev := headerOr(sub, "Event", ""); ev != polSLA {
		t.Fatalf("SUBSCRIBE Event %q, want %s", ev, polSLA)
	}
	if sub.Recipient.String() != phone.contact {
		t.Fatalf("SUBSCRIBE to %s, want the phone's contact %s", sub.Recipient.String(), phone.contact)
	}
	if v := sub.Via(); v == nil || !strings.EqualFold(v.Transport, "TLS") {
		t.Fatalf("top Via %v, want the registrar's TLS hop", sub.Via())
	}
	eventually(t, "puaside's subscription to the phone accepted", func() bool {
		for _, s := range ps.d.Engine().Subscriptions() {
			if s.Key.Event == polSLA && s.LastStatus == 200 {
				return true
			}
		}
		return false
	})

	body := blaDoc(blaLine, 1, "full", blaDialog{"tls-call-1", "confirmed", "1"})
	if code := phone.notify(ctx, sub, body); code != 200 {
		t.Fatalf("NOTIFY back through the registrar: %d", code)
	}
	eventually(t, "the phone's dialog;sla state published to the presence server", func() bool {
		n, err := presence.Count(ctx, "presentity", "username = ? AND domain = ? AND event = ?", "line100", "example.com", polSLA)
		return err == nil && n == 1
	})
}
