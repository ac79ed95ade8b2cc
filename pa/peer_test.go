package pa

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// peer is a raw SIP watcher for the notifier's failure paths: it answers
// each NOTIFY with what answer returns (0: no answer at all) and records
// every NOTIFY it got.
type peer struct {
	t      testing.TB
	ua     *sipgo.UserAgent
	cl     *sipgo.Client
	addr   string
	mu     sync.Mutex
	got    []*sip.Request
	answer func(n int, req *sip.Request) int
	ch     chan struct{}
}

func newPeer(t testing.TB, answer func(n int, req *sip.Request) int) *peer {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("peer"))
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{t: t, ua: ua, addr: conn.LocalAddr().String(), answer: answer, ch: make(chan struct{}, 1000)}
	srv, _ := sipgo.NewServer(ua)
	port := conn.LocalAddr().(*net.UDPAddr).Port
	p.cl, _ = sipgo.NewClient(ua, sipgo.WithClientConnectionAddr(p.addr), sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientPort(port))
	srv.OnNotify(func(req *sip.Request, tx sip.ServerTransaction) {
		p.mu.Lock()
		p.got = append(p.got, req)
		n := len(p.got)
		p.mu.Unlock()
		p.ch <- struct{}{}
		if code := p.answer(n, req); code != 0 {
			_ = tx.Respond(sip.NewResponseFromRequest(req, code, "Answer", nil))
		}
	})
	go func() { _ = srv.ServeUDP(conn) }()
	for i := 0; i < 1000; i++ {
		if c, err := ua.TransportLayer().GetConnection("udp", p.addr); err == nil && c != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	t.Cleanup(func() { ua.Close() })
	return p
}

// subscribe sends an initial SUBSCRIBE to server with extra headers.
func (p *peer) subscribe(server, pres, event string, expires int, extra ...sip.Header) *sip.Response {
	p.t.Helper()
	req := sip.NewRequest(sip.SUBSCRIBE, uri(pres))
	req.AppendHeader(&sip.FromHeader{Address: uri("sip:peer@example.com"), Params: tagged(sip.GenerateTagN(8))})
	req.AppendHeader(&sip.ToHeader{Address: uri(pres), Params: sip.NewParams()})
	req.AppendHeader(&sip.ContactHeader{Address: uri("sip:peer@" + p.addr)})
	req.AppendHeader(sip.NewHeader("Event", event))
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	for _, h := range extra {
		req.AppendHeader(h)
	}
	req.SetDestination(server)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := p.cl.Do(ctx, req)
	if err != nil {
		p.t.Fatal(err)
	}
	return res
}

// waitN waits until n NOTIFYs arrived and returns them.
func (p *peer) waitN(n int, within time.Duration) []*sip.Request {
	p.t.Helper()
	deadline := time.After(within)
	for {
		p.mu.Lock()
		if len(p.got) >= n {
			out := append([]*sip.Request(nil), p.got...)
			p.mu.Unlock()
			return out
		}
		p.mu.Unlock()
		select {
		case <-p.ch:
		case <-deadline:
			p.mu.Lock()
			defer p.mu.Unlock()
			p.t.Fatalf("got %d NOTIFYs, want %d", len(p.got), n)
			return nil
		}
	}
}

func (p *peer) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.got)
}
