package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/internal/sipphone"
)

// reconcileLimit is how soon after a restart the presence server must show
// what happened at the proxy while puaside was down (issue: "a lamp whose
// call ended while puaside was down is dark within 30 s of the restart").
const reconcileLimit = 30 * time.Second

// TestReconcileAfterCrash: the full chain (Kamailio registrar with the
// dialog module, mirroring with siptrace, and serving jsonrpcs with
// WITH_RPC; the puaside binary on MariaDB; a Kamailio presence server)
// with reconciliation on. alice calls bob, the call is answered, puaside is
// killed with SIGKILL, and while it is down bob hangs up (the BYE passes
// through the proxy and its copy is lost), alice unregisters and carol
// registers and calls bob, who answers. puaside is started again: within
// 30 s both parties' lamps of the first call are dark, alice is closed,
// carol open and the lamps of carol's call confirmed at the presence server,
// learned from the registrar's ul.dump and dlg.list; carol's hang-up, seen
// by puaside as usual, then ends the adopted call. Without reconciliation
// the first call's lamps stay confirmed for dialoginfo.lifetime_cap, alice
// open until her contact expires, and carol and her call unknown.
func TestReconcileAfterCrash(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r := newFCRig(ctx, t, func(c *config.Config) {
		c.Reconcile.Enabled = true
		c.Reconcile.RPCURL = fmt.Sprintf("http://127.0.0.1:%d/RPC", freePort(t))
		c.Reconcile.DefaultDomain = "example.com" // registrar.cfg keeps usrloc's use_domain=0
		c.Reconcile.Interval, c.Reconcile.Timeout = 2*time.Second, 2*time.Second
	})
	carol := sipphone.NewPhone(t, "carol", "example.com")
	watcher := sipphone.NewPhone(t, "watcher2", "example.com")
	presCarol, err := watcher.Watch(ctx, r.presence.Addr(), carol.AoR(), "presence", sipphone.WatchOptions{Expires: 3600})
	if err != nil {
		t.Fatalf("watch carol: %v", err)
	}
	dlgCarol, err := watcher.Watch(ctx, r.presence.Addr(), carol.AoR(), "dialog",
		sipphone.WatchOptions{Expires: 3600, Accept: "application/dialog-info+xml"})
	if err != nil {
		t.Fatalf("watch carol's dialogs: %v", err)
	}

	time.Sleep(fcPersisted)
	r.proc.kill()

	// While puaside is down.
	if err := r.in.Bye(ctx); err != nil {
		t.Fatalf("bob's BYE: %v", err)
	}
	if res, err := r.alice.Unregister(ctx, r.reg.Addr()); err != nil || res.StatusCode != 200 {
		t.Fatalf("unregister alice: %v %v", res, err)
	}
	if res, err := carol.Register(ctx, r.reg.Addr(), 600); err != nil || res.StatusCode != 200 {
		t.Fatalf("register carol: %v %v", res, err)
	}
	second, err := carol.Invite(ctx, r.reg.Addr(), r.bob.AoR())
	if err != nil {
		t.Fatalf("carol's invite: %v", err)
	}
	for answered := false; !answered; {
		select {
		case ic := <-r.bob.Incoming():
			if ic.Request.CallID().Value() == second.CallID() {
				ic.Answer()
				answered = true
			}
		case <-ctx.Done():
			t.Fatal("bob never rang for carol")
		}
	}
	if err := second.WaitAnswer(ctx); err != nil {
		t.Fatalf("carol's call: %v", err)
	}
	// The proxy's times are whole seconds: the adopted call must be older
	// than the grace when the restarted daemon asks.
	time.Sleep(r.cfg.Reconcile.Grace + time.Second)

	r.proc = startDaemonProc(t, "puaside#2", r.bin, r.cfgPath, r.cfg.HTTP.HTTPListen)
	restartedAt := time.Now()
	left := func() time.Duration { return time.Until(restartedAt.Add(reconcileLimit)) }

	expectNotify(ctx, t, r.dlgBob, left(), "bob's lamp terminated after the restart", fcDialogIn(r.callID, "terminated"))
	expectNotify(ctx, t, r.dlgAlice, left(), "alice's lamp terminated after the restart", fcDialogIn(r.callID, "terminated"))
	expectNotify(ctx, t, r.presAlice, left(), "alice closed after the restart", pidfClosed)
	expectNotify(ctx, t, presCarol, left(), "carol open after the restart", pidfOpen(carol))
	expectNotify(ctx, t, dlgCarol, left(), "carol's call confirmed after the restart", fcDialogIn(second.CallID(), "confirmed"))
	expectNotify(ctx, t, r.dlgBob, left(), "bob's lamp of carol's call confirmed after the restart", fcDialogIn(second.CallID(), "confirmed"))
	t.Logf("presence server corrected %s after the restart", time.Since(restartedAt).Round(time.Millisecond))
	if t.Failed() {
		return
	}
	fcCheckDialogOrder(t, r.dlgBob, "bob's dialog watcher", r.callID, "early", "confirmed", "terminated")
	fcCheckDialogOrder(t, r.dlgAlice, "alice's dialog watcher", r.callID, "confirmed", "terminated")

	if err := second.Bye(ctx); err != nil {
		t.Fatalf("carol's BYE: %v", err)
	}
	waitNotify(ctx, t, dlgCarol, waitLimit, "carol's call terminated", fcDialogIn(second.CallID(), "terminated"))
	waitNotify(ctx, t, r.dlgBob, waitLimit, "bob's lamp of carol's call terminated", fcDialogIn(second.CallID(), "terminated"))

	// The terminated documents go after the linger: no dialog row is left,
	// and bob stays open (his registration is still at the registrar).
	deadline := time.Now().Add(waitLimit)
	for {
		n, err := r.presence.Count(ctx, "presentity", "event = ?", "dialog")
		if err == nil && n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dialog presentities left %s after the linger (%v):\n%s", waitLimit, err, fcPresentityRows(ctx, t, r.presence))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ns := r.presBob.Notifications(); len(ns) == 0 || !pidfOpen(r.bob)(ns[len(ns)-1].Body) {
		t.Errorf("bob's last presence NOTIFY is not open:\n%s", notifyBodies(r.presBob))
	}
	fcCheckPresentities(ctx, t, r.presence, "after reconciliation", map[string]int{"presence": 1, "dialog": 0})

	// Once corrected, further passes find nothing to correct: the
	// registrar's contacts, expiries and calls read as puaside keeps them.
	api := &apiCaller{t: t, base: "http://" + r.cfg.HTTP.HTTPListen, hc: &http.Client{Timeout: waitLimit}}
	counts := func() (passes float64, fixes map[string]float64) {
		mfs := api.scrape()
		fixes = map[string]float64{}
		for _, w := range []string{"aor_added", "aor_removed", "aor_changed", "aor_gone", "call_ended", "call_adopted"} {
			fixes[w] = apiCounter(mfs, "puaside_tracker_events_total", map[string]string{"tracker": "reconcile", "what": w})
		}
		return apiCounter(mfs, "puaside_tracker_events_total", map[string]string{"tracker": "reconcile", "what": "pass"}), fixes
	}
	p0, f0 := counts()
	t.Logf("after %v passes: %v", p0, f0)
	if f0["aor_added"] != 1 || f0["aor_gone"] != 1 || f0["call_ended"] != 1 || f0["aor_removed"] != 0 || f0["call_adopted"] != 1 {
		t.Errorf("corrections %v, want carol added, alice gone, one call ended, one adopted", f0)
	}
	for deadline := time.Now().Add(waitLimit); ; time.Sleep(200 * time.Millisecond) {
		p, f := counts()
		if p >= p0+2 {
			if !maps.Equal(f, f0) {
				t.Errorf("passes over an unchanged proxy corrected again: %v, then %v", f0, f)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %v passes in %s with a 2 s interval", p-p0, waitLimit)
		}
	}
}
