package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/pua"
)

// TestRefusedPublicationRetried: a presence server refuses alice's
// presence twice (403, then 489) before accepting it. The registration is
// not repeated, so usrloc never asks again; the engine's refused backoff
// alone brings the publication to the server, and the refusals show in
// the listing while they last and in the metrics.
func TestRefusedPublicationRetried(t *testing.T) {
	fake := newFakePS(t, "refusing-presence")
	var mu sync.Mutex
	var got []string // status answered to each PUBLISH
	var accepted string
	fake.serve(t, fakePSHandlers{publish: func(req *sip.Request, tx sip.ServerTransaction) {
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
			fakeAcceptPublish(req, tx, fake.nextETag("e"))
		}
	}})

	cfg := baseConfig(t, nil)
	cfg.PUA.ServerAddress = fake.URI()
	cfg.PUA.RefusedRetryMin = time.Second
	cfg.PUA.RefusedRetryMax = 4 * time.Second
	cfg.Features.BLA = false
	cfg.Features.Dialoginfo = false
	cfg.Usrloc.MinExpires = 1
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
