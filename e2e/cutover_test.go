package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/internal/kamailiotest"
	"github.com/puaside/puaside/internal/sipphone"
)

// TestCutOverFromKamailioPua follows the operator guide's cut-over: a
// registrar publishing with Kamailio's pua, pua_usrloc and pua_dialoginfo
// (pua table on MariaDB), with a call confirmed, is stopped; `puaside
// migrate` (the binary) adopts the table and its publications; puaside
// starts on that database with reconciliation on, then the registrar with
// the mirroring configuration (siptrace: registrations and calls). The
// presence server holds one publication per presentity afterwards
// (pua_usrloc had one per contact), the watchers never see a registered
// user other than open, and no party ever has two dialog publications:
// the call's publications Kamailio left are removed at puaside's claim
// sweep (the registrar's restart took the call's dialog state, so puaside
// cannot follow it), and a call after the cut-over has one per party.
func TestCutOverFromKamailioPua(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	presence := presenceServer(t)
	cfgPath, err := filepath.Abs("../internal/kamailiotest/testdata/registrar-pua.cfg")
	if err != nil {
		t.Fatal(err)
	}
	old := kamailiotest.Start(t, kamailiotest.Options{
		Config:  cfgPath,
		DB:      kamailiotest.MySQL,
		Defines: map[string]string{"PRESENCE_URI": kamailiotest.Str(presence.URI())},
	})

	watcher := sipphone.NewPhone(t, "watcher", "example.com")
	watch := func(user string) *sipphone.Watcher {
		w, err := watcher.Watch(ctx, presence.Addr(), sip.Uri{Scheme: "sip", User: user, Host: "example.com"}, "presence", sipphone.WatchOptions{Expires: 600})
		if err != nil {
			t.Fatalf("watch %s: %v", user, err)
		}
		return w
	}
	register := func(registrar *kamailiotest.Instance, ph *sipphone.Phone) {
		t.Helper()
		res, err := ph.Register(ctx, registrar.Addr(), 300)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("register %s at %s: %v %v", ph.User, registrar.Addr(), res, err)
		}
	}
	open := func(b string) bool { return strings.Contains(b, "<basic>open</basic>") }
	count := func(user, event string) int {
		n, err := presence.Count(ctx, "presentity", "username = ? AND event = ?", user, event)
		if err != nil {
			t.Error(err)
		}
		return n
	}
	publications := func(user string) int { return count(user, "presence") }
	dialogs := func(user string) int { return count(user, "dialog") }
	call := func(registrar *kamailiotest.Instance, from, to *sipphone.Phone) {
		t.Helper()
		c, err := from.Invite(ctx, registrar.Addr(), to.AoR())
		if err != nil {
			t.Fatalf("call %s → %s: %v", from.User, to.User, err)
		}
		if err := c.WaitAnswer(ctx); err != nil {
			t.Fatalf("call %s → %s through %s: %v", from.User, to.User, registrar.Addr(), err)
		}
	}

	// Before: alice has two phones, so pua_usrloc holds two publications.
	alice1 := sipphone.NewPhone(t, "alice", "example.com")
	alice2 := sipphone.NewPhone(t, "alice", "example.com")
	bob := sipphone.NewPhone(t, "bob", "example.com")
	wa, wb := watch("alice"), watch("bob")
	register(old, alice1)
	register(old, alice2)
	register(old, bob)
	waitNotify(ctx, t, wa, waitLimit, "alice open (Kamailio's pua_usrloc)", open)
	waitNotify(ctx, t, wb, waitLimit, "bob open (Kamailio's pua_usrloc)", open)
	eventually(t, "pua_usrloc's publications at the presence server", func() bool {
		return publications("alice") == 2 && publications("bob") == 1
	})
	// alice calls bob: pua_dialoginfo publishes the call for both.
	call(old, alice1, bob)
	eventually(t, "pua_dialoginfo's publications of the call at the presence server", func() bool {
		return dialogs("alice") == 1 && dialogs("bob") == 1
	})
	// pua keeps a row for every ETag its dialog publication had (one per
	// state of the call); the presence server holds one.
	eventually(t, "Kamailio wrote its pua table", func() bool {
		ul, err1 := old.Count(ctx, "pua", "etag <> '' AND pres_id LIKE 'UL_PUBLISH.%'")
		da, err2 := old.Count(ctx, "pua", "etag <> '' AND pres_id LIKE 'DIALOG_PUBLISH.%' AND pres_uri = 'sip:alice@example.com'")
		db, err3 := old.Count(ctx, "pua", "etag <> '' AND pres_id LIKE 'DIALOG_PUBLISH.%' AND pres_uri = 'sip:bob@example.com'")
		return err1 == nil && err2 == nil && err3 == nil && ul == 3 && da >= 1 && db >= 1
	})

	// The cut-over, in the guide's order: the configuration on Kamailio's
	// database with reconciliation on, checked; the registrar stopped;
	// puaside migrate; puaside started; the registrar started mirroring.
	cfg := baseConfig(t, presence)
	cfg.DBURL = old.DBURL()
	cfg.Features.BLA = false
	cfg.Reconcile.Enabled = true
	cfg.Reconcile.RPCURL = fmt.Sprintf("http://127.0.0.1:%d/RPC", freePort(t))
	cfg.Reconcile.DefaultDomain = "example.com" // registrar.cfg keeps usrloc's use_domain=0
	cfg.Reconcile.Interval, cfg.Reconcile.Timeout = 2*time.Second, 2*time.Second
	cfgFile := writeDaemonConfig(t, cfg)
	bin := puasideBinary(t)
	if r := runBinary(t, bin, "check", "-config", cfgFile); r.code != 0 {
		t.Fatalf("puaside check: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	old.Stop()
	r := runBinary(t, bin, "migrate", "-config", cfgFile)
	if r.code != 0 || !regexp.MustCompile(`adopted \d+ publications of Kamailio's pua \(\d+ duplicates to remove at start`).MatchString(r.stdout) {
		t.Fatalf("puaside migrate on Kamailio's database: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	startPuaside(t, cfg)

	// From here on no party ever has two dialog publications.
	var maxDialogs atomic.Int64
	sampled := make(chan struct{})
	sctx, stopSampling := context.WithCancel(ctx)
	go func() {
		defer close(sampled)
		for sctx.Err() == nil {
			for _, u := range []string{"alice", "bob"} {
				if n, err := presence.Count(sctx, "presentity", "username = ? AND event = 'dialog'", u); err == nil && int64(n) > maxDialogs.Load() {
					maxDialogs.Store(int64(n))
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	mirror := registrar(t, "WITH_SIPTRACE", cfg)

	// alice's duplicate is removed; the phones' next REGISTERs (mirrored)
	// update the publications puaside took over instead of adding copies.
	eventually(t, "one publication for alice", func() bool { return publications("alice") == 1 })
	register(mirror, alice1)
	register(mirror, alice2)
	register(mirror, bob)
	waitNotify(ctx, t, wa, waitLimit, "alice open with both phones (puaside)", func(b string) bool {
		return pidfOpen(alice1)(b) && pidfOpen(alice2)(b)
	})
	waitNotify(ctx, t, wb, waitLimit, "bob open (puaside)", pidfOpen(bob))
	// The call Kamailio published: puaside did not see it and the
	// restarted registrar does not know it (dlg.list), so nobody claims
	// its publications and the sweep removes them (section 11).
	eventually(t, "the old call's publications removed", func() bool { return dialogs("alice") == 0 && dialogs("bob") == 0 })
	// A call after the cut-over: one publication per party, puaside's.
	call(mirror, alice2, bob)
	eventually(t, "the new call's publications", func() bool { return dialogs("alice") == 1 && dialogs("bob") == 1 })
	time.Sleep(2 * time.Second) // let any second copy reach the server
	if a, b := publications("alice"), publications("bob"); a != 1 || b != 1 {
		t.Fatalf("publications at the presence server after the cut-over: alice %d, bob %d, want 1 each", a, b)
	}
	if a, b := dialogs("alice"), dialogs("bob"); a != 1 || b != 1 {
		t.Fatalf("dialog publications at the presence server after the cut-over: alice %d, bob %d, want 1 each", a, b)
	}
	stopSampling()
	<-sampled
	if n := maxDialogs.Load(); n > 1 {
		t.Fatalf("a party had %d dialog publications at the presence server after the cut-over", n)
	}
	for name, w := range map[string]*sipphone.Watcher{"alice": wa, "bob": wb} {
		seen := false
		for i, n := range w.Notifications() {
			switch {
			case open(n.Body):
				seen = true
			case seen && (n.Terminated() || !open(n.Body)):
				t.Fatalf("%s: notification %d after open is not open (flap):\n%s", name, i, notifyBodies(w))
			}
		}
	}
}
