package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/kamailiotest"
	"github.com/puaside/puaside/internal/sipphone"
)

// TestPABehindKamailio: phones keep the registrar as their proxy; it
// forwards their SUBSCRIBEs to puaside's presence server (registrar.cfg
// -A WITH_PA), record-routed, so pa's NOTIFYs follow the route set back
// through Kamailio; in-dialog refreshes and the unsubscribe go the same way.
func TestPABehindKamailio(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := baseConfig(t, nil)
	cfg.Features.Dialoginfo, cfg.Features.BLA = false, false
	cfg.Usrloc.MinExpires = time.Second
	ps := startPuaside(t, cfg)
	reg := kamailiotest.Start(t, kamailiotest.Options{
		Config: kamailiotest.ConfigPath(t, "registrar.cfg"),
		DB:     kamailiotest.NoDB,
		Defines: map[string]string{
			"WITH_REPLICATE":        "",
			"WITH_PA":               "",
			"PUASIDE_REPLICATE_URI": kamailiotest.Str("sip:" + hostPort(cfg.Ingest.ReplicateListen[0])),
			"PUASIDE_PA_URI":        kamailiotest.Str("sip:" + hostPort(cfg.PA.Listen[0])),
			"PUASIDE_SIP_PORT":      strings.TrimPrefix(hostPort(cfg.PUA.Listen[0]), "127.0.0.1:"),
		},
	})
	alice := sipphone.NewPhone(t, "alice", "example.com")
	watcher := sipphone.NewPhone(t, "watcher", "example.com")
	w, err := watcher.Watch(ctx, reg.Addr(), alice.AoR(), "presence", sipphone.WatchOptions{Expires: 600})
	if err != nil {
		t.Fatalf("SUBSCRIBE through Kamailio: %v", err)
	}
	waitNotify(ctx, t, w, waitLimit, "alice closed", pidfClosed)
	ws := ps.d.PA().Watchers()
	if len(ws) != 1 || ws[0].WatcherURI != "sip:watcher@example.com" ||
		len(ws[0].RouteSet) != 1 || !strings.Contains(ws[0].RouteSet[0], reg.Addr()) {
		t.Fatalf("pa holds %+v, want one subscription routed through %s", ws, reg.Addr())
	}
	if res, err := alice.Register(ctx, reg.Addr(), 300); err != nil || res.StatusCode != 200 {
		t.Fatalf("register: %v %v", res, err)
	}
	waitNotify(ctx, t, w, waitLimit, "alice open", pidfOpen(alice))
	// The in-dialog refresh goes to pa's Contact through the route set.
	res, err := w.Refresh(ctx, 600)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("refresh: %v %v", res, err)
	}
	if rr := w.Response().GetHeader("Record-Route"); rr == nil {
		t.Fatal("the SUBSCRIBE's 200 carries no Record-Route: the proxy did not record-route")
	}
	waitNotify(ctx, t, w, waitLimit, "open again after the refresh", pidfOpen(alice))
	if err := w.Unsubscribe(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WaitNotify(ctx, func(n sipphone.Notification) bool { return n.Terminated() }); err != nil {
		t.Fatalf("no final NOTIFY: %v", err)
	}
	eventually(t, "pa holds no subscription", func() bool { return len(ps.d.PA().Watchers()) == 0 })
}
