package daemon

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/internal/dbtest"
	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/store"
)

// TestPolicyRulesSurviveRestart: an authorization rule put through the
// API is listed with the configuration's, decides a watcher at once, and
// after a restart on the same database (SQLite and MariaDB) is still
// listed and still decides new subscriptions; removed, the default
// decides again.
func TestPolicyRulesSurviveRestart(t *testing.T) {
	for _, backend := range []string{store.SQLite, store.MySQL} {
		t.Run(backend, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.DBURL = dbtest.URL(t, backend)
			cfg.PUA.ServerAddress = ""
			cfg.PA.Listen = []string{"udp:127.0.0.1:0"}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := func() *Daemon {
				d, err := New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
				if err != nil {
					t.Fatal(err)
				}
				if err := d.Start(ctx); err != nil {
					t.Fatal(err)
				}
				return d
			}
			d := start()
			base := "http://" + d.Addrs()["http"][0]
			if code, out := call(t, "PUT", base+"/v1/policy", `{"presentity":"example.com","watcher":"partner.example","action":"allow"}`); code != 200 {
				t.Fatalf("put: %d %s", code, out)
			}
			if code, out := call(t, "PUT", base+"/v1/policy", `{"watcher":"bad host","action":"allow"}`); code != 400 {
				t.Fatalf("put of a bad rule: %d %s", code, out)
			}
			watch := func(d *Daemon) *sipphone.Watcher {
				p := sipphone.NewPhone(t, "carol", "partner.example")
				w, err := p.Watch(ctx, strings.TrimPrefix(d.Addrs()["pa"][0], "udp:"),
					sip.Uri{Scheme: "sip", User: "alice", Host: "example.com"}, "presence", sipphone.WatchOptions{Expires: 600})
				if err != nil {
					t.Fatal(err)
				}
				return w
			}
			state := func(w *sipphone.Watcher, prefix string) {
				t.Helper()
				wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
				defer wcancel()
				if _, err := w.WaitNotify(wctx, func(n sipphone.Notification) bool { return strings.HasPrefix(n.State, prefix) }); err != nil {
					t.Fatalf("want %s: %v; %+v", prefix, err, w.Notifications())
				}
			}
			state(watch(d), "active")
			if err := d.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}

			d = start()
			t.Cleanup(func() { _ = d.Stop(context.Background()) })
			base = "http://" + d.Addrs()["http"][0]
			if code, out := call(t, "GET", base+"/v1/policy", ""); code != 200 ||
				!strings.Contains(out, `{"presentity":"example.com","watcher":"partner.example","action":"allow","source":"database"}`) {
				t.Fatalf("rules after a restart: %d %s", code, out)
			}
			state(watch(d), "active")
			if code, out := call(t, "DELETE", base+"/v1/policy?presentity=example.com&watcher=partner.example", ""); code != 200 {
				t.Fatalf("delete: %d %s", code, out)
			}
			state(watch(d), "pending")
		})
	}
}
