package e2e

import (
	"context"
	"encoding/xml"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/internal/dbtest"
	"github.com/puaside/puaside/internal/kamailiotest"
	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/store"
)

// Timings of the full-chain test: every publication is asked for
// fcRefresh, so a lost or stale publication shows at the presence server
// within one refresh period; records are written behind every
// fcUpdatePeriod.
const (
	fcRefresh      = 20 * time.Second
	fcUpdatePeriod = time.Second
	fcDialogLinger = 2 * time.Second
	fcClosedLinger = 5 * time.Second
	// fcPersisted is how long the test lets state rest before a SIGKILL:
	// state older than the write-behind period of the engine and of the
	// trackers (all fcUpdatePeriod here) must survive it; twice that leaves
	// room for the write itself.
	fcPersisted = 2 * fcUpdatePeriod
)

// fcDialogDoc is the part of a dialog-info NOTIFY body the test reads.
type fcDialogDoc struct {
	XMLName xml.Name `xml:"dialog-info"`
	Dialogs []struct {
		CallID string `xml:"call-id,attr"`
		State  string `xml:"state"`
	} `xml:"dialog"`
}

// fcDialogStates returns the states of callID's dialogs in a body.
func fcDialogStates(body, callID string) []string {
	var d fcDialogDoc
	if strings.TrimSpace(body) == "" || xml.Unmarshal([]byte(body), &d) != nil {
		return nil
	}
	var out []string
	for _, it := range d.Dialogs {
		if it.CallID == callID {
			out = append(out, strings.ToLower(strings.TrimSpace(it.State)))
		}
	}
	return out
}

// fcRank orders RFC 4235 dialog states; 0 for anything else.
func fcRank(s string) int {
	return map[string]int{"trying": 1, "proceeding": 2, "early": 3, "confirmed": 4, "terminated": 5}[s]
}

// fcDialogIn matches a dialog-info body showing callID, every dialog of
// it in state (a lamp is right only when no publication says otherwise).
func fcDialogIn(callID, state string) func(string) bool {
	return func(b string) bool {
		ss := fcDialogStates(b, callID)
		for _, s := range ss {
			if s != state {
				return false
			}
		}
		return len(ss) > 0
	}
}

// fcCheckDialogOrder checks that w's NOTIFYs show callID's dialogs only
// moving forward through want, every state of want seen.
func fcCheckDialogOrder(t *testing.T, w *sipphone.Watcher, who, callID string, want ...string) {
	t.Helper()
	best, seen := 0, map[string]bool{}
	for i, n := range w.Notifications() {
		for _, s := range fcDialogStates(n.Body, callID) {
			r := fcRank(s)
			if r == 0 || r < best {
				t.Errorf("%s NOTIFY #%d: state %q out of order\n%s", who, i, s, notifyBodies(w))
			}
			best = max(best, r)
			seen[s] = true
		}
	}
	for _, s := range want {
		if !seen[s] {
			t.Errorf("%s never saw %s for call %s\n%s", who, s, callID, notifyBodies(w))
		}
	}
}

// fcPresentities counts the presence server's presentity rows per
// "user event" (expired rows not yet cleaned included: a duplicate
// publication shows as two rows until its expiry).
func fcPresentities(ctx context.Context, t testing.TB, ps *kamailiotest.Instance) map[string]int {
	t.Helper()
	rows, err := ps.DB().QueryContext(ctx, "SELECT username, event, COUNT(*) FROM presentity GROUP BY username, domain, event")
	if err != nil {
		t.Fatalf("presentity rows: %v", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var user, ev string
		var n int
		if err := rows.Scan(&user, &ev, &n); err != nil {
			t.Fatalf("presentity rows: %v", err)
		}
		out[user+" "+ev] += n
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("presentity rows: %v", err)
	}
	return out
}

// fcPresentityRows lists the presence server's presentity rows (for
// diagnostics).
func fcPresentityRows(ctx context.Context, t *testing.T, ps *kamailiotest.Instance) string {
	t.Helper()
	rows, err := ps.DB().QueryContext(ctx, "SELECT username, event, etag, expires, body FROM presentity")
	if err != nil {
		return fmt.Sprintf("presentity rows: %v", err)
	}
	defer rows.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "now %d\n", time.Now().Unix())
	for rows.Next() {
		var user, ev, etag, body string
		var exp int64
		if err := rows.Scan(&user, &ev, &etag, &exp, &body); err != nil {
			return fmt.Sprintf("presentity rows: %v", err)
		}
		fmt.Fprintf(&b, "%s %s etag=%s expires=%d\n%s\n", user, ev, etag, exp, body)
	}
	return b.String()
}

// fcCheckPresentities fails when any (user, event) has more than max rows
// for the events given.
func fcCheckPresentities(ctx context.Context, t testing.TB, ps *kamailiotest.Instance, when string, limit map[string]int) {
	t.Helper()
	got := fcPresentities(ctx, t, ps)
	for k, n := range got {
		ev := k[strings.IndexByte(k, ' ')+1:]
		if lim, ok := limit[ev]; ok && n > lim {
			t.Errorf("%s: %d presentity rows for %q, want at most %d (duplicate publication); all: %v", when, n, k, lim, got)
		}
	}
}

// fcPUARows lists puaside's own pua table (for diagnostics).
func fcPUARows(ctx context.Context, t *testing.T, dbURL string) string {
	t.Helper()
	db, err := store.Open(ctx, dbURL, "pua")
	if err != nil {
		return fmt.Sprintf("open %v", err)
	}
	defer db.Close()
	recs, err := db.LoadRecords(ctx)
	if err != nil {
		return fmt.Sprintf("load %v", err)
	}
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "  %s %s %s etag=%q expires=%d\n", r.PresURI, r.EventName, r.PresID, r.ETag, r.Expires)
	}
	return b.String()
}

// fcRig is the deployment of the full-chain tests: MariaDB, a Kamailio
// presence server, the puaside binary, a Kamailio registrar mirroring to it
// with siptrace, phones alice and bob registered and in a confirmed call
// alice → bob, and watchers of both at the presence server.
type fcRig struct {
	bin, cfgPath, dbURL string
	cfg                 config.Config
	presence, reg       *kamailiotest.Instance
	proc                *daemonProc
	alice, bob          *sipphone.Phone
	presAlice, presBob  *sipphone.Watcher
	dlgAlice, dlgBob    *sipphone.Watcher
	call                *sipphone.Call
	in                  *sipphone.IncomingCall
	callID              string
}

// newFCRig brings the deployment up to the confirmed call, checking the
// watchers see presence open and BLF early then confirmed. tweak, when not
// nil, changes the daemon's configuration first.
func newFCRig(ctx context.Context, t *testing.T, tweak func(*config.Config)) *fcRig {
	t.Helper()
	r := &fcRig{bin: puasideBinary(t)}
	r.dbURL = dbtest.URL(t, store.MySQL)
	r.presence = presenceServer(t)
	cfg := baseConfig(t, r.presence)
	cfg.DBURL = r.dbURL
	cfg.Features.BLA = false
	cfg.PUA.DefaultExpires = fcRefresh
	cfg.PUA.UpdatePeriod = fcUpdatePeriod
	cfg.PUA.RequestTimeout = 5 * time.Second
	cfg.Usrloc.PublishExpires = fcRefresh
	cfg.Usrloc.ClosedLinger = fcClosedLinger
	cfg.Usrloc.FlushInterval = fcUpdatePeriod
	cfg.Usrloc.MinExpires = time.Second
	cfg.Dialoginfo.PublishExpires = fcRefresh
	cfg.Dialoginfo.TerminatedLinger = fcDialogLinger
	cfg.Dialoginfo.FlushInterval = fcUpdatePeriod
	if tweak != nil {
		tweak(&cfg)
	}
	r.cfg = cfg
	r.cfgPath = writeDaemonConfig(t, cfg)

	r.proc = startDaemonProc(t, "puaside#1", r.bin, r.cfgPath, cfg.HTTP.HTTPListen)
	r.reg = registrar(t, "WITH_SIPTRACE", cfg)

	r.alice = sipphone.NewPhone(t, "alice", "example.com")
	r.bob = sipphone.NewPhone(t, "bob", "example.com")
	watcher := sipphone.NewPhone(t, "watcher", "example.com")
	watch := func(ph *sipphone.Phone, ev string, o sipphone.WatchOptions) *sipphone.Watcher {
		t.Helper()
		o.Expires = 3600
		w, err := watcher.Watch(ctx, r.presence.Addr(), ph.AoR(), ev, o)
		if err != nil {
			t.Fatalf("watch %s %s: %v", ev, ph.User, err)
		}
		return w
	}
	dlgOpts := sipphone.WatchOptions{Accept: "application/dialog-info+xml"}
	r.presAlice, r.presBob = watch(r.alice, "presence", sipphone.WatchOptions{}), watch(r.bob, "presence", sipphone.WatchOptions{})
	r.dlgAlice, r.dlgBob = watch(r.alice, "dialog", dlgOpts), watch(r.bob, "dialog", dlgOpts)

	// Registrations → presence open.
	for _, ph := range []*sipphone.Phone{r.alice, r.bob} {
		res, err := ph.Register(ctx, r.reg.Addr(), 600)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("register %s: %v %v", ph.User, res, err)
		}
	}
	waitNotify(ctx, t, r.presAlice, waitLimit, "alice open", pidfOpen(r.alice))
	waitNotify(ctx, t, r.presBob, waitLimit, "bob open", pidfOpen(r.bob))

	// alice calls bob: bob's lamp early, then confirmed.
	r.bob.SetPolicy(sipphone.KeepRinging)
	call, err := r.alice.Invite(ctx, r.reg.Addr(), r.bob.AoR())
	if err != nil {
		t.Fatalf("invite: %v", err)
	}
	r.call, r.callID = call, call.CallID()
	for r.in == nil {
		select {
		case ic := <-r.bob.Incoming():
			if ic.Request.CallID().Value() == r.callID {
				r.in = ic
			}
		case <-ctx.Done():
			t.Fatal("bob never rang")
		}
	}
	waitNotify(ctx, t, r.dlgBob, waitLimit, "bob early", fcDialogIn(r.callID, "early"))
	r.in.Answer()
	if err := call.WaitAnswer(ctx); err != nil {
		t.Fatalf("answer: %v", err)
	}
	waitNotify(ctx, t, r.dlgBob, waitLimit, "bob confirmed", fcDialogIn(r.callID, "confirmed"))
	waitNotify(ctx, t, r.dlgAlice, waitLimit, "alice confirmed", fcDialogIn(r.callID, "confirmed"))
	fcCheckPresentities(ctx, t, r.presence, "in call", map[string]int{"presence": 1, "dialog": 1})
	return r
}

// restart kills the daemon with SIGKILL, waits down, and starts the same
// binary with the same configuration and database again; it returns when
// the new daemon is ready.
func (r *fcRig) restart(ctx context.Context, t *testing.T, down time.Duration) time.Time {
	t.Helper()
	r.proc.kill()
	t.Logf("pua table after SIGKILL:\n%s", fcPUARows(ctx, t, r.dbURL))
	time.Sleep(down)
	r.proc = startDaemonProc(t, "puaside#2", r.bin, r.cfgPath, r.cfg.HTTP.HTTPListen)
	restartedAt := time.Now()
	// Whatever the restarted daemon sends first (refreshes with the stored
	// ETags, re-publications) has been answered well within this; the
	// publications of the first run are still alive at the server, so a
	// publication sent anew instead of refreshed shows as a second row.
	time.Sleep(fcPersisted)
	fcCheckPresentities(ctx, t, r.presence, "after the restart", map[string]int{"presence": 1, "dialog": 1})
	return restartedAt
}

// hangUpAndCheck has bob hang up and alice unregister, and checks every
// lamp converges within one refresh period with no duplicate publication;
// then, past a refresh period after restartedAt, that bob is still open.
func (r *fcRig) hangUpAndCheck(ctx context.Context, t *testing.T, restartedAt time.Time) {
	t.Helper()
	if err := r.in.Bye(ctx); err != nil {
		t.Fatalf("bob's BYE: %v", err)
	}
	res, err := r.alice.Unregister(ctx, r.reg.Addr())
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("unregister alice: %v %v", res, err)
	}
	changedAt := time.Now()
	waitNotify(ctx, t, r.dlgBob, fcRefresh, "bob terminated after the restart", fcDialogIn(r.callID, "terminated"))
	waitNotify(ctx, t, r.dlgAlice, fcRefresh, "alice terminated after the restart", fcDialogIn(r.callID, "terminated"))
	waitNotify(ctx, t, r.presAlice, fcRefresh, "alice closed after the restart", pidfClosed)
	t.Logf("lamps converged %s after the hang-up", time.Since(changedAt).Round(time.Millisecond))
	fcCheckDialogOrder(t, r.dlgBob, "bob's dialog watcher", r.callID, "early", "confirmed", "terminated")
	fcCheckDialogOrder(t, r.dlgAlice, "alice's dialog watcher", r.callID, "confirmed", "terminated")

	// No dialog row left beyond the linger (and Kamailio's clean period).
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

	// Past one refresh period after the restart, bob's publication (carried
	// over by the restarted daemon) is still open and single.
	if d := time.Until(restartedAt.Add(fcRefresh + 5*time.Second)); d > 0 {
		time.Sleep(d)
	}
	fcCheckPresentities(ctx, t, r.presence, "a refresh period after the restart", map[string]int{"presence": 1, "dialog": 0})
	if n, err := r.presence.Count(ctx, "presentity", "username = ? AND event = ?", "bob", "presence"); err != nil || n != 1 {
		t.Errorf("bob's presence rows: %d (%v), want 1", n, err)
	}
	if ns := r.presBob.Notifications(); len(ns) == 0 || !pidfOpen(r.bob)(ns[len(ns)-1].Body) {
		t.Errorf("bob's last presence NOTIFY is not open:\n%s", notifyBodies(r.presBob))
	}
	if ns := r.presAlice.Notifications(); len(ns) == 0 || !pidfClosed(ns[len(ns)-1].Body) {
		t.Errorf("alice's last presence NOTIFY is not closed:\n%s", notifyBodies(r.presAlice))
	}
	for _, w := range []*sipphone.Watcher{r.dlgAlice, r.dlgBob, r.presAlice, r.presBob} {
		for _, n := range w.Notifications() {
			if n.Terminated() {
				t.Errorf("a watcher's subscription was terminated: %+v", n)
			}
		}
	}
	for _, w := range []*sipphone.Watcher{r.dlgAlice, r.dlgBob} {
		ns := w.Notifications()
		for _, s := range fcDialogStates(ns[len(ns)-1].Body, r.callID) {
			if s != "terminated" {
				t.Errorf("a dialog lamp is still lit (%s):\n%s", s, notifyBodies(w))
			}
		}
	}
}

// TestFullChainKamailioMariaDB is the deployment of the issue "Deploy it
// next to Kamailio or OpenSIPS" end to end: a Kamailio registrar/proxy
// mirrors REGISTERs and calls (siptrace) to the puaside binary, which keeps
// its state in MariaDB and publishes to a Kamailio presence server; watchers
// there see presence and BLF. puaside is killed (SIGKILL) mid-call, once the
// call's state is older than a few write-behind periods, and started again
// at once; the hang-up and the unregistration that follow must reach every
// watcher within one refresh period, with no duplicate publication at the
// presence server, and bob must stay open throughout.
func TestFullChainKamailioMariaDB(t *testing.T) {
	begin := time.Now()
	defer func() { t.Logf("full chain: %s", time.Since(begin).Round(100*time.Millisecond)) }()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r := newFCRig(ctx, t, nil)

	time.Sleep(fcPersisted)
	restartedAt := r.restart(ctx, t, 0)
	r.hangUpAndCheck(ctx, t, restartedAt)

	// bob's presence was open and only open from its first open on: the
	// crash and restart never showed him offline.
	opened := false
	for i, n := range r.presBob.Notifications() {
		if pidfOpen(r.bob)(n.Body) {
			opened = true
		} else if opened {
			t.Errorf("bob's presence NOTIFY #%d after open is not open:\n%s", i, notifyBodies(r.presBob))
		}
	}
}

// TestFullChainLongOutageRepublishesCall: puaside is killed mid-call and
// stays down longer than a refresh period, so every publication expires at
// the presence server (the watchers see bob offline and his lamp dark).
// Once restarted, the lamps must show the truth again within one refresh
// period: bob open, the call confirmed; then the hang-up and the
// unregistration converge as in the quick restart.
func TestFullChainLongOutageRepublishesCall(t *testing.T) {
	begin := time.Now()
	defer func() { t.Logf("long outage: %s", time.Since(begin).Round(100*time.Millisecond)) }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r := newFCRig(ctx, t, nil)

	time.Sleep(fcPersisted)
	r.proc.kill()
	// Every publication expires at the server: bob's dialog lamp goes dark.
	waitNotify(ctx, t, r.dlgBob, fcRefresh+15*time.Second, "bob's lamp dark after expiry at the server", func(b string) bool {
		return len(fcDialogStates(b, r.callID)) == 0
	})
	waitNotify(ctx, t, r.presBob, waitLimit, "bob not open after expiry at the server", func(b string) bool { return !pidfOpen(r.bob)(b) })
	r.proc = startDaemonProc(t, "puaside#2", r.bin, r.cfgPath, r.cfg.HTTP.HTTPListen)
	restartedAt := time.Now()

	// Both checks run before either fails, then the hang-up still runs.
	expectNotify(ctx, t, r.presBob, fcRefresh, "bob open again after the restart", pidfOpen(r.bob))
	expectNotify(ctx, t, r.dlgBob, fcRefresh, "bob's call confirmed again after the restart", fcDialogIn(r.callID, "confirmed"))
	r.hangUpAndCheck(ctx, t, restartedAt)
}

// TestFullChainCrashBetweenWriteBehinds: the engine is set to write its
// records behind only every 30 s (Kamailio's habit) while the trackers
// write theirs every second, and puaside is killed mid-call long before
// that period has passed. With pua.sync_etags (the default) every ETag the
// presence server granted was stored at once, so the restarted daemon
// refreshes the same publications: no second row at the presence server
// (with sync_etags off this test fails: the trackers' publications go out
// anew and the first run's stay until they expire). The hang-up and the
// unregistration must then reach the watchers within one refresh period.
func TestFullChainCrashBetweenWriteBehinds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r := newFCRig(ctx, t, func(c *config.Config) { c.PUA.UpdatePeriod = 30 * time.Second })

	time.Sleep(fcPersisted)
	restartedAt := r.restart(ctx, t, 0)
	r.hangUpAndCheck(ctx, t, restartedAt)
}
