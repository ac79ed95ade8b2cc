package bla

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/pua"
)

// sipPeer is an in-process SIP peer playing both a BLA phone (it answers
// dialog;sla SUBSCRIBEs from a script, then sends a full-state NOTIFY) and
// the presence server (200 with a SIP-ETag to every PUBLISH).
type sipPeer struct {
	t    *testing.T
	ua   *sipgo.UserAgent
	cl   *sipgo.Client
	port int

	mu       sync.Mutex
	codes    []int // replies to the next SUBSCRIBEs; then 200
	subs     int
	publish  int
	notified chan int // status of each NOTIFY sent
}

func newSIPPeer(t *testing.T, codes ...int) *sipPeer {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("bla-peer"),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(log)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(log)))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := sipgo.NewClient(ua, sipgo.WithClientLogger(log), sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &sipPeer{t: t, ua: ua, cl: cl, port: pc.LocalAddr().(*net.UDPAddr).Port, codes: codes,
		notified: make(chan int, 16)}
	srv.OnSubscribe(p.onSubscribe)
	srv.OnPublish(p.onPublish)
	go srv.ServeUDP(pc)
	t.Cleanup(func() {
		ua.Close()
		pc.Close()
	})
	return p
}

func (p *sipPeer) uri() string { return fmt.Sprintf("sip:127.0.0.1:%d", p.port) }

// contact is the phone's registered contact.
func (p *sipPeer) contact() string { return fmt.Sprintf("sip:100@127.0.0.1:%d", p.port) }

func (p *sipPeer) onPublish(req *sip.Request, tx sip.ServerTransaction) {
	p.mu.Lock()
	p.publish++
	n := p.publish
	p.mu.Unlock()
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(sip.NewHeader("SIP-ETag", "etag"+strconv.Itoa(n)))
	if h := req.GetHeader("Expires"); h != nil {
		res.AppendHeader(sip.NewHeader("Expires", h.Value()))
	}
	_ = tx.Respond(res)
}

func (p *sipPeer) onSubscribe(req *sip.Request, tx sip.ServerTransaction) {
	p.mu.Lock()
	p.subs++
	code := 200
	if len(p.codes) > 0 {
		code, p.codes = p.codes[0], p.codes[1:]
	}
	p.mu.Unlock()
	if code != 200 {
		_ = tx.Respond(sip.NewResponseFromRequest(req, code, "Refused", nil))
		return
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	toTag := "phone-" + strconv.Itoa(p.subs)
	if tag, ok := req.To().Params.Get("tag"); ok {
		toTag = tag
	} else {
		res.To().Params.Add("tag", toTag)
	}
	res.AppendHeader(sip.NewHeader("Expires", "600"))
	res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "100", Host: "127.0.0.1", Port: p.port}})
	_ = tx.Respond(res)
	go p.notify(req, toTag)
}

// notify sends the full-state NOTIFY of the phone (one confirmed call).
func (p *sipPeer) notify(sub *sip.Request, toTag string) {
	target := sub.Contact().Address
	req := sip.NewRequest(sip.NOTIFY, target)
	from := sub.To().AsFrom()
	from.Params = sip.NewParams()
	from.Params.Add("tag", toTag)
	to := sub.From().AsTo()
	req.AppendHeader(&from)
	req.AppendHeader(&to)
	req.AppendHeader(sub.CallID())
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.NOTIFY})
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "100", Host: "127.0.0.1", Port: p.port}})
	req.AppendHeader(sip.NewHeader("Event", EventSLA))
	req.AppendHeader(sip.NewHeader("Subscription-State", "active;expires=600"))
	ct := sip.ContentTypeHeader(ContentType)
	req.AppendHeader(&ct)
	req.SetBody(doc(0, dialogdoc.DocFull, "c1:confirmed:1"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := p.cl.Do(ctx, req)
	if err != nil {
		p.notified <- 0
		return
	}
	p.notified <- res.StatusCode
}

func (p *sipPeer) subscribes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.subs
}

// waitUntil polls cond for at most 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A phone that refuses the first SUBSCRIBE (a Polycom answers 489 while it
// boots) is subscribed again by the manager, and its state gets published.
func TestRefusedPhoneSubscribedAgainWithEngine(t *testing.T) {
	peer := newSIPPeer(t, 489)
	ecfg := pua.DefaultConfig()
	ecfg.Listen = []string{"udp:127.0.0.1:0"}
	ecfg.ServerAddress = peer.uri()
	ecfg.RequestTimeout = 2 * time.Second
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	eng, err := pua.New(ecfg, pua.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Lines = []LineConfig{{AoR: lineAoR}}
	m, err := New(cfg, Options{Subscriber: eng, Publisher: eng, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	eng.HandleNotify(pua.FlagBLASubscribe, m.HandleNotify)
	if err := eng.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = eng.Stop(ctx)
	})
	contacts := []Contact{{URI: "<" + peer.contact() + ">", Expires: time.Now().Add(time.Hour)}}
	key := pua.SubKey{PresURI: lineAoR, WatcherURI: lineAoR, Event: EventSLA, ID: ContactID(peer.contact())}

	m.ContactsChanged(context.Background(), lineAoR, contacts)
	waitUntil(t, "the refused subscription", func() bool {
		s, ok := eng.Subscription(key)
		return ok && s.State == pua.StateFailed
	})
	if ps := m.Lines()[0].Phones; len(ps) != 1 || ps[0].SubscriptionState != pua.StateFailed {
		t.Fatalf("phones after the refusal %+v", ps)
	}

	// The next report of the line's contacts tries the phone again.
	m.ContactsChanged(context.Background(), lineAoR, contacts)
	waitUntil(t, "a second SUBSCRIBE", func() bool { return peer.subscribes() >= 2 })
	select {
	case code := <-peer.notified:
		if code != 200 {
			t.Fatalf("phone's NOTIFY answered %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no NOTIFY sent")
	}
	waitUntil(t, "the phone's state published", func() bool {
		p, ok := eng.Publication(pua.Key{PresURI: lineAoR, Event: EventSLA, ID: LinePublicationID})
		return ok && p.State == pua.StateActive
	})
}
