package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/kamailiotest"
	"github.com/puaside/puaside/internal/sipphone"
)

// TestHEPOverTCP: the registrar's siptrace sends HEPv3 over TCP (a
// `;transport=tcp` duplicate URI, as across hosts, where UDP copies may be
// lost or reordered) to puaside's only HEP input, a `tcp:` listener. A phone
// registering and unregistering is seen open, then closed, by a watcher at
// the presence server, and every copy is counted as taken over HEP.
func TestHEPOverTCP(t *testing.T) {
	presence := presenceServer(t)
	cfg := baseConfig(t, presence)
	cfg.Features.Dialoginfo, cfg.Features.BLA = false, false
	cfg.Usrloc.ClosedLinger = time.Minute
	hepPort := freePort(t)
	cfg.Ingest.HEPListen = []string{fmt.Sprintf("tcp:127.0.0.1:%d", hepPort)}
	cfg.Ingest.TraceListen = nil
	startPuaside(t, cfg)
	reg := kamailiotest.Start(t, kamailiotest.Options{
		Config: kamailiotest.ConfigPath(t, "registrar.cfg"),
		DB:     kamailiotest.NoDB,
		Defines: map[string]string{
			"WITH_HEP":        "",
			"PUASIDE_HEP_URI": kamailiotest.Str(fmt.Sprintf("sip:127.0.0.1:%d;transport=tcp", hepPort)),
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	watcher := sipphone.NewPhone(t, "watcher", "example.com")
	s := &usrlocSetup{presence: presence, registrar: reg, cfg: cfg, watcher: watcher}
	alice := sipphone.NewPhone(t, "alice", "example.com")
	wa := s.watch(ctx, t, "alice")
	s.register(ctx, t, alice, 300)
	waitNotify(ctx, t, wa, waitLimit, "alice open", pidfOpen(alice))
	s.register(ctx, t, alice, 0)
	waitNotify(ctx, t, wa, waitLimit, "alice closed after unregister", pidfClosed)

	m := ulScrape(t, cfg)
	for _, kind := range []string{"register", "register_reply"} {
		if n := m.sum("puaside_ingest_messages_total", "input", "hep", "kind", kind, "result", "accepted"); n != 2 {
			t.Errorf("hep %s accepted over TCP: %v, want 2", kind, n)
		}
	}
	if n := m.sum("puaside_ingest_dropped_total", "input", "hep"); n != 0 {
		t.Errorf("hep over TCP: %v copies dropped", n)
	}
}
