package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/internal/kamailiotest"
	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/store"
)

// TestCutOverFromKamailioPua follows the operator guide's cut-over: a
// registrar publishing with Kamailio's pua, pua_usrloc and pua_dialoginfo
// (pua table on MariaDB) is stopped; puaside migrate adopts the table and
// its publications; puaside starts on that database, then the registrar
// with the mirroring configuration. The presence server holds one
// publication per presentity afterwards (pua_usrloc had one per contact)
// and the watchers never see a registered user other than open.
func TestCutOverFromKamailioPua(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
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
	publications := func(user string) int {
		n, err := presence.Count(ctx, "presentity", "username = ? AND event = 'presence'", user)
		if err != nil {
			t.Fatal(err)
		}
		return n
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
	eventually(t, "Kamailio wrote its pua table", func() bool {
		n, err := old.Count(ctx, "pua", "etag <> ''")
		return err == nil && n == 3
	})

	// The cut-over, in the guide's order.
	old.Stop()
	cfg := baseConfig(t, presence)
	cfg.DBURL = old.DBURL()
	cfg.Features.BLA = false
	db, err := store.Open(ctx, cfg.DBURL, cfg.DBTable)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatalf("migrate on Kamailio's database: %v", err)
	}
	db.Close()
	startPuaside(t, cfg)
	mirror := registrar(t, "WITH_REPLICATE", cfg)

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
	time.Sleep(2 * time.Second) // let any second copy reach the server
	if a, b := publications("alice"), publications("bob"); a != 1 || b != 1 {
		t.Fatalf("publications at the presence server after the cut-over: alice %d, bob %d, want 1 each", a, b)
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
