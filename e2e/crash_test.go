package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/internal/sipphone"
)

// TestCrashRightAfterAnswerSweepsLamps: puaside is killed (SIGKILL) within
// a second of an answer, before the dialog tracker wrote the call (its
// flush_interval is long here), while the engine had already stored the
// ETags of both lamps' publications. The restarted tracker knows no call,
// so nobody claims those publications: the engine removes them, both lamps
// go dark, and stay dark through the BYE.
func TestCrashRightAfterAnswerSweepsLamps(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := newFCRig(ctx, t, func(c *config.Config) { c.Dialoginfo.FlushInterval = 10 * time.Minute })

	// Long enough for the engine's ETags and usrloc's contacts to be
	// written, not for the dialog tracker's calls.
	time.Sleep(fcPersisted)
	r.proc.kill()
	t.Logf("pua table after SIGKILL:\n%s", fcPUARows(ctx, t, r.dbURL))
	r.proc = startDaemonProc(t, "puaside#2", r.bin, r.cfgPath, r.cfg.HTTP.HTTPListen)
	// Dark: no dialog of the call shown, or only terminated ones.
	dark := func(b string) bool {
		for _, s := range fcDialogStates(b, r.callID) {
			if s != "terminated" {
				return false
			}
		}
		return true
	}
	// Claims are done as the trackers start: the lamps go dark at once,
	// far sooner than the publications' lease (fcRefresh) would end.
	const sweepLimit = 8 * time.Second
	expectNotify(ctx, t, r.dlgBob, sweepLimit, "bob's lamp dark after the sweep", dark)
	expectNotify(ctx, t, r.dlgAlice, sweepLimit, "alice's lamp dark after the sweep", dark)

	if err := r.in.Bye(ctx); err != nil {
		t.Fatalf("bob's BYE: %v", err)
	}
	// A refresh period later nothing lit them again.
	time.Sleep(fcRefresh + 5*time.Second)
	for _, w := range []*sipphone.Watcher{r.dlgAlice, r.dlgBob} {
		ns := w.Notifications()
		if len(ns) == 0 || !dark(ns[len(ns)-1].Body) {
			t.Errorf("a dialog lamp is lit after the sweep and the BYE:\n%s", notifyBodies(w))
		}
	}
	if n, err := r.presence.Count(ctx, "presentity", "event = ?", "dialog"); err != nil || n != 0 {
		t.Errorf("dialog presentities left: %d (%v)\n%s", n, err, fcPresentityRows(ctx, t, r.presence))
	}
	// Presence, whose tracker wrote its contacts, is carried over: bob open.
	if ns := r.presBob.Notifications(); len(ns) == 0 || !pidfOpen(r.bob)(ns[len(ns)-1].Body) {
		t.Errorf("bob's last presence NOTIFY is not open:\n%s", notifyBodies(r.presBob))
	}
}
