package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/bla"
	"github.com/puaside/puaside/internal/puatest"
	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/pua"
)

// TestRefusedPublicationRetried: a presence server refuses alice's
// presence twice (403, then 489) before accepting it. The registration is
// not repeated, so usrloc never asks again; the engine's refused backoff
// alone brings the publication to the server, and the refusals show in
// the listing while they last and in the metrics.
func TestRefusedPublicationRetried(t *testing.T) {
	var fake *puatest.PresenceServer
	var mu sync.Mutex
	var got []string // status answered to each PUBLISH
	var accepted string
	ready := make(chan struct{}) // closed once fake is set
	fake = puatest.NewPresenceServer(t, puatest.ServerOptions{Name: "refusing-presence", Publish: func(req *sip.Request, tx sip.ServerTransaction) {
		<-ready
		mu.Lock()
		defer mu.Unlock()
		switch len(got) {
		case 0:
			got = append(got, "403")
			_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusForbidden, "Forbidden", nil))
		case 1:
			got = append(got, "489")
			_ = tx.Respond(sip.NewResponseFromRequest(req, 489, "Bad Event", nil))
		default:
			got = append(got, "200")
			if accepted == "" {
				accepted = string(req.Body())
			}
			puatest.AcceptPublish(req, tx, fake.NextETag("e"))
		}
	}})
	close(ready)

	cfg := baseConfig(t, nil)
	cfg.PUA.ServerAddress = fake.URI()
	cfg.PUA.RefusedRetryMin = time.Second
	cfg.PUA.RefusedRetryMax = 4 * time.Second
	cfg.Features.BLA = false
	cfg.Features.Dialoginfo = false
	cfg.Usrloc.MinExpires = time.Second
	ps := startPuaside(t, cfg)
	reg := registrar(t, "WITH_SIPTRACE", cfg)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice := sipphone.NewPhone(t, "alice", "example.com")
	outRegister(ctx, t, reg, alice)

	key := pua.Key{PresURI: "sip:alice@example.com", Event: "presence", ID: "usrloc"}
	var refused pua.PublicationInfo
	eventually(t, "the refusal in the listing", func() bool {
		for _, p := range ps.d.Engine().Publications() {
			if p.Key.PresURI == key.PresURI && p.Key.Event == key.Event && p.State == pua.StateFailed {
				refused = p
				return true
			}
		}
		return false
	})
	if refused.Refusals < 1 || refused.NextRetry.IsZero() || (refused.LastStatus != 403 && refused.LastStatus != 489) {
		t.Fatalf("refused publication listed as %+v", refused)
	}
	eventually(t, "the publication accepted by the server", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(accepted, "<basic>open</basic>")
	})
	mu.Lock()
	t.Logf("PUBLISH answers: %v", got)
	mu.Unlock()
	eventually(t, "the publication active", func() bool {
		for _, p := range ps.d.Engine().Publications() {
			if p.Key.PresURI == key.PresURI && p.Key.Event == key.Event {
				return p.State == pua.StateActive && p.Refusals == 0
			}
		}
		return false
	})
	m := ulScrape(t, cfg)
	if n := m.sum("puaside_pua_refused_total", "method", "PUBLISH"); n != 2 {
		t.Errorf("puaside_pua_refused_total %v, want 2", n)
	}
	if n := m.sum("puaside_pua_refused_retries_total", "method", "PUBLISH"); n != 2 {
		t.Errorf("puaside_pua_refused_retries_total %v, want 2", n)
	}
}

// TestBLAPhoneBootingRefusesSubscribe: a Polycom still booting answers
// puaside's dialog;sla SUBSCRIBE 489 once. Nothing asks for the
// subscription again (the phone's registration does not change), yet the
// engine's refused backoff subscribes again, and the phone's state reaches
// the presence server.
func TestBLAPhoneBootingRefusesSubscribe(t *testing.T) {
	presence := presenceServer(t)
	cfg := baseConfig(t, presence)
	cfg.Features.Dialoginfo = false
	cfg.BLA.Lines = []bla.LineConfig{{AoR: blaLine}}
	cfg.BLA.ServerAddress = ""
	cfg.PUA.RefusedRetryMin = time.Second
	cfg.PUA.RefusedRetryMax = 4 * time.Second
	reg := registrar(t, "WITH_REPLICATE", cfg)
	ps := startPuaside(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := newPolycom(t, "line100", "example.com")
	a.mu.Lock()
	a.refuse = []int{489}
	a.mu.Unlock()
	if res, err := a.register(ctx, reg.Addr(), 300); err != nil || res.StatusCode != 200 {
		t.Fatalf("register: %v %v", res, err)
	}
	if err := a.waitUntil(ctx, "a SUBSCRIBE accepted and its NOTIFY answered", func() bool { return len(a.codes) >= 1 }); err != nil {
		t.Fatalf("%v; SUBSCRIBEs %+v", err, a.subscribes())
	}
	subs := a.subscribes()
	if len(subs) != 2 || subs[0].Answer || !subs[1].Answer || subs[1].InDialog {
		t.Fatalf("SUBSCRIBEs %+v: want a refused one, then a new accepted one", subs)
	}
	if c := a.responses()[0]; c != 200 {
		t.Fatalf("initial NOTIFY answered %d", c)
	}
	eventually(t, "the phone's state published", func() bool {
		p, ok := lookup(ps, blaKey(a))
		return ok && p.State == pua.StateActive && p.LastStatus == 200
	})
	m := ulScrape(t, cfg)
	if n := m.sum("puaside_pua_refused_total", "method", "SUBSCRIBE", "status", "489"); n != 1 {
		t.Errorf("puaside_pua_refused_total{SUBSCRIBE,489} %v, want 1", n)
	}
}
