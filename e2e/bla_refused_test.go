package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/bla"
	"github.com/puaside/puaside/pua"
)

// TestBLARefusedPhoneSubscribedAgain: a phone of a shared line refuses
// puaside's first SUBSCRIBE (489, as a booting Polycom does). The refused
// subscription is not forgotten: when the line's registrations next change
// (the second phone registers), the first phone is subscribed again and its
// state reaches the Kamailio presence server.
func TestBLARefusedPhoneSubscribedAgain(t *testing.T) {
	presence := presenceServer(t)
	cfg := baseConfig(t, presence)
	cfg.Features.Dialoginfo = false
	cfg.BLA.Lines = []bla.LineConfig{{AoR: blaLine}}
	cfg.BLA.ServerAddress = ""
	reg := registrar(t, "WITH_REPLICATE", cfg)
	ps := startPuaside(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := newPolycom(t, "line100", "example.com")
	a.mu.Lock()
	a.refuse = []int{489}
	a.mu.Unlock()
	if res, err := a.register(ctx, reg.Addr(), 300); err != nil || res.StatusCode != 200 {
		t.Fatalf("phone A: register: %v %v", res, err)
	}
	if err := a.waitUntil(ctx, "a refused SUBSCRIBE", func() bool { return len(a.subs) == 1 && !a.subs[0].Answer }); err != nil {
		t.Fatal(err)
	}
	subKey := pua.SubKey{PresURI: blaLine, WatcherURI: blaLine, Event: polSLA, ID: bla.ContactID(a.contactString())}
	eventually(t, "A's subscription failed", func() bool {
		s, ok := ps.d.Engine().Subscription(subKey)
		return ok && s.State == pua.StateFailed
	})

	b := newPolycom(t, "line100", "example.com")
	if res, err := b.register(ctx, reg.Addr(), 300); err != nil || res.StatusCode != 200 {
		t.Fatalf("phone B: register: %v %v", res, err)
	}
	if err := a.waitUntil(ctx, "a second SUBSCRIBE, accepted", func() bool {
		return len(a.subs) >= 2 && a.subs[len(a.subs)-1].Answer && len(a.codes) >= 1
	}); err != nil {
		t.Fatalf("%v; SUBSCRIBEs: %+v", err, a.subscribes())
	}
	if c := a.responses()[0]; c != 200 {
		t.Fatalf("phone A: initial NOTIFY answered %d", c)
	}
	// The line's document, composed with A's state, reaches the server.
	eventually(t, "the line's state published", func() bool {
		p, ok := lookup(ps, blaKey(a))
		return ok && p.State == pua.StateActive && p.LastStatus == 200
	})
	eventually(t, "the line's presentity row", func() bool {
		n, err := presence.Count(ctx, "presentity", "username = ? AND domain = ? AND event = ?",
			"line100", "example.com", polSLA)
		return err == nil && n == 1
	})
	if code, err := a.notify(ctx, "active;expires=300", blaDoc(blaLine, 1, "partial", blaDialog{"a-call", "confirmed", "1"})); err != nil || code != 200 {
		t.Fatalf("phone A: NOTIFY of a call: %d %v", code, err)
	}
	eventually(t, "A's call accepted by the presence server", func() bool {
		p, ok := lookup(ps, blaKey(a))
		return ok && p.LastStatus == 200 && p.State == pua.StateActive && strings.Contains(string(p.Body), "a-call")
	})
}
