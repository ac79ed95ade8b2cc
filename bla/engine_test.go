package bla

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/puaside/puaside/dialogdoc"
	"github.com/puaside/puaside/internal/puatest"
	"github.com/puaside/puaside/pua"
)

// sipPeer is the kit's presence server playing both a BLA phone (it
// answers dialog;sla SUBSCRIBEs from a script, then sends a full-state
// NOTIFY) and the presence server (200 with a SIP-ETag to every PUBLISH).
type sipPeer struct {
	*puatest.PresenceServer

	// ready is closed once PresenceServer is set: the server serves before
	// NewPresenceServer returns.
	ready    chan struct{}
	mu       sync.Mutex
	codes    []int // replies to the next SUBSCRIBEs; then 200
	subs     int
	notified chan int // status of each NOTIFY sent
}

func newSIPPeer(t *testing.T, codes ...int) *sipPeer {
	t.Helper()
	p := &sipPeer{codes: codes, notified: make(chan int, 16), ready: make(chan struct{})}
	p.PresenceServer = puatest.NewPresenceServer(t, puatest.ServerOptions{Name: "bla-peer", ContactUser: "100", Subscribe: p.onSubscribe})
	close(p.ready)
	return p
}

func (p *sipPeer) uri() string { return p.URI() }

// contact is the phone's registered contact.
func (p *sipPeer) contact() string { return fmt.Sprintf("sip:100@127.0.0.1:%d", p.Port()) }

func (p *sipPeer) onSubscribe(req *sip.Request, tx sip.ServerTransaction) {
	<-p.ready
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
	toTag := "phone-" + strconv.Itoa(p.subscribes())
	if tag, ok := req.To().Params.Get("tag"); ok {
		toTag = tag
	} else {
		res.To().Params.Add("tag", toTag)
	}
	res.AppendHeader(sip.NewHeader("Expires", "600"))
	res.AppendHeader(&sip.ContactHeader{Address: p.Contact()})
	_ = tx.Respond(res)
	p.Go(func() { p.notify(req, toTag) })
}

// notify sends the full-state NOTIFY of the phone (one confirmed call).
func (p *sipPeer) notify(sub *sip.Request, toTag string) {
	res, err := p.Notify(sub, toTag, "active;expires=600", ContentType, doc(0, dialogdoc.DocFull, "c1:confirmed:1"), 1)
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
