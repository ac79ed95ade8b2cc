package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/internal/kamailiotest"
	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/mgmt"
	"github.com/puaside/puaside/pua"
)

// Presence-server outages: the truth the presence server must hold once it
// is back, whatever happened while it was away.

// outageDown is how long the presence server stays stopped, and
// outageCatchUp how soon after its return it must hold the truth.
const (
	outageDown    = 60 * time.Second
	outageCatchUp = 10 * time.Second
)

// outRow is one presentity row of the presence server.
type outRow struct{ user, event, body string }

// outRows reads the presence server's presentity table.
func outRows(ctx context.Context, t *testing.T, ps *kamailiotest.Instance) ([]outRow, error) {
	t.Helper()
	rows, err := ps.DB().QueryContext(ctx, "SELECT username, event, body FROM presentity")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []outRow
	for rows.Next() {
		var r outRow
		if err := rows.Scan(&r.user, &r.event, &r.body); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// outTruth is what the presence server must show: who is online, and
// which calls are confirmed or over.
type outTruth struct {
	open, offline []string
	confirmed     map[string][]string // Call-ID → users whose lamp is lit for it
	ended         map[string][]string // Call-ID → users whose lamp must be dark for it
}

// check returns "" when rows show the truth, else what differs.
func (w outTruth) check(rows []outRow) string {
	var diffs []string
	openRow := func(user string) bool {
		for _, r := range rows {
			if r.user == user && r.event == "presence" && strings.Contains(r.body, "<basic>open</basic>") {
				return true
			}
		}
		return false
	}
	for _, u := range w.open {
		if !openRow(u) {
			diffs = append(diffs, u+" not open")
		}
	}
	for _, u := range w.offline {
		if openRow(u) {
			diffs = append(diffs, u+" still open")
		}
	}
	lit := func(user, callID string) (lit, shown bool) {
		for _, r := range rows {
			if r.user != user || r.event != "dialog" {
				continue
			}
			for _, s := range fcDialogStates(r.body, callID) {
				shown = true
				if s != "terminated" {
					lit = true
				}
			}
		}
		return lit, shown
	}
	for cid, users := range w.confirmed {
		for _, u := range users {
			if l, _ := lit(u, cid); !l || !fcDialogIn(cid, "confirmed")(outDialogBody(rows, u, cid)) {
				diffs = append(diffs, u+" lamp not confirmed for "+cid)
			}
		}
	}
	for cid, users := range w.ended {
		for _, u := range users {
			if l, _ := lit(u, cid); l {
				diffs = append(diffs, u+" lamp still lit for "+cid)
			}
		}
	}
	return strings.Join(diffs, "; ")
}

// outDialogBody returns the body of user's dialog row showing callID.
func outDialogBody(rows []outRow, user, callID string) string {
	for _, r := range rows {
		if r.user == user && r.event == "dialog" && len(fcDialogStates(r.body, callID)) > 0 {
			return r.body
		}
	}
	return ""
}

// outWaitTruth polls the presentity table until it shows want or limit
// passes; it returns how long that took.
func outWaitTruth(ctx context.Context, t *testing.T, ps *kamailiotest.Instance, limit time.Duration, what string, want outTruth) time.Duration {
	t.Helper()
	start := time.Now()
	var why string
	for {
		rows, err := outRows(ctx, t, ps)
		if err == nil {
			if why = want.check(rows); why == "" {
				return time.Since(start)
			}
		} else {
			why = err.Error()
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: the presence server does not hold the truth %s later: %s\n%s", what, limit, why, fcPresentityRows(ctx, t, ps))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// outCall has caller call callee through the registrar and callee answer.
func outCall(ctx context.Context, t *testing.T, reg *kamailiotest.Instance, caller, callee *sipphone.Phone) (*sipphone.Call, *sipphone.IncomingCall) {
	t.Helper()
	callee.SetPolicy(sipphone.KeepRinging)
	call, err := caller.Invite(ctx, reg.Addr(), callee.AoR())
	if err != nil {
		t.Fatalf("invite %s → %s: %v", caller.User, callee.User, err)
	}
	for {
		select {
		case ic := <-callee.Incoming():
			if ic.Request.CallID().Value() != call.CallID() {
				continue
			}
			ic.Answer()
			if err := call.WaitAnswer(ctx); err != nil {
				t.Fatalf("answer %s → %s: %v", caller.User, callee.User, err)
			}
			return call, ic
		case <-ctx.Done():
			t.Fatalf("%s never rang", callee.User)
		}
	}
}

// outRegister registers ph through the registrar.
func outRegister(ctx context.Context, t *testing.T, reg *kamailiotest.Instance, ph *sipphone.Phone) {
	t.Helper()
	res, err := ph.Register(ctx, reg.Addr(), 600)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("register %s: %v %v", ph.User, res, err)
	}
}

// outReadyz returns puaside's /readyz status and body.
func outReadyz(t *testing.T, cfg config.Config) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+cfg.HTTP.HTTPListen+"/readyz", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// outageConfig is puaside's configuration for the outage tests: requests
// time out after 5 s and backoffs start at 5 s, so that during a 60 s
// outage they grow to the default retry_max (60 s) and only the flush on
// the server's return can bring it up to date within outageCatchUp. (With
// the default request_timeout of 32 s, a 60 s outage leaves most records
// in a transaction whose UDP retransmission the returning server answers;
// longer outages end as here. TestPresenceServerOutageDefaults runs that
// case.) The probe runs every 2 s, its default.
func outageConfig(t *testing.T, presence *kamailiotest.Instance) config.Config {
	cfg := baseConfig(t, presence)
	cfg.Features.BLA = false
	cfg.PUA.RetryMin = 5 * time.Second
	cfg.PUA.RetryMax = pua.DefaultConfig().RetryMax
	cfg.PUA.RequestTimeout = 5 * time.Second
	cfg.PUA.ProbeInterval = pua.DefaultConfig().ProbeInterval
	cfg.Usrloc.MinExpires = time.Second
	return cfg
}

// TestPresenceServerOutage stops the presence server for 60 s while users
// register, unregister, call and hang up, then starts it again on the same
// port and database: within 10 s of its return it holds the truth (who is
// online, which lamps are lit), and /readyz reports the outage while it
// lasts.
func TestPresenceServerOutage(t *testing.T) {
	presence := presenceServer(t)
	runPresenceServerOutage(t, presence, outageConfig(t, presence))
}

// TestPresenceServerOutageDefaults is TestPresenceServerOutage with the
// engine's timing defaults (request_timeout 32 s, retry_min 1 s, retry_max
// 60 s, probe_interval 2 s): the requests in flight when the server comes
// back (each waits up to Timer F for its answer) are answered or sent
// anew within the same 10 s.
func TestPresenceServerOutageDefaults(t *testing.T) {
	presence := presenceServer(t)
	cfg := outageConfig(t, presence)
	d := pua.DefaultConfig()
	cfg.PUA.RetryMin, cfg.PUA.RetryMax, cfg.PUA.RequestTimeout, cfg.PUA.ProbeInterval = d.RetryMin, d.RetryMax, d.RequestTimeout, d.ProbeInterval
	runPresenceServerOutage(t, presence, cfg)
}

// runPresenceServerOutage is the body of the outage tests.
func runPresenceServerOutage(t *testing.T, presence *kamailiotest.Instance, cfg config.Config) {
	startPuaside(t, cfg)
	reg := registrar(t, "WITH_SIPTRACE", cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	ph := map[string]*sipphone.Phone{}
	for _, u := range []string{"u1", "u2", "u3", "u4", "u5"} {
		ph[u] = sipphone.NewPhone(t, u, "example.com")
	}
	for _, u := range []string{"u1", "u2", "u3"} {
		outRegister(ctx, t, reg, ph[u])
	}
	call12, in12 := outCall(ctx, t, reg, ph["u1"], ph["u2"])
	outWaitTruth(ctx, t, presence, waitLimit, "before the outage", outTruth{
		open:      []string{"u1", "u2", "u3"},
		confirmed: map[string][]string{call12.CallID(): {"u1", "u2"}},
	})

	presence.Stop()
	stoppedAt := time.Now()
	t.Log("presence server stopped")
	// While it is down: u3 goes offline, u4 and u5 come online and call,
	// the call u1 → u2 ends.
	if res, err := ph["u3"].Unregister(ctx, reg.Addr()); err != nil || res.StatusCode != 200 {
		t.Fatalf("unregister u3: %v %v", res, err)
	}
	if err := in12.Bye(ctx); err != nil {
		t.Fatalf("u2's BYE: %v", err)
	}
	outRegister(ctx, t, reg, ph["u4"])
	outRegister(ctx, t, reg, ph["u5"])
	call45, _ := outCall(ctx, t, reg, ph["u4"], ph["u5"])

	// The first requests time out after request_timeout.
	for deadline := stoppedAt.Add(outageDown); ; time.Sleep(100 * time.Millisecond) {
		if code, body := outReadyz(t, cfg); code != http.StatusOK && strings.Contains(body, "presence server") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never reported the presence server during its outage")
		}
	}
	time.Sleep(time.Until(stoppedAt.Add(outageDown)))
	presence.StartAgain(t)
	t.Log("presence server started again")
	took := outWaitTruth(ctx, t, presence, outageCatchUp, "after the outage", outTruth{
		open:      []string{"u1", "u2", "u4", "u5"},
		offline:   []string{"u3"},
		confirmed: map[string][]string{call45.CallID(): {"u4", "u5"}},
		ended:     map[string][]string{call12.CallID(): {"u1", "u2"}},
	})
	t.Logf("the presence server held the truth %s after its return", took.Round(time.Millisecond))
	eventually(t, "/readyz ready again", func() bool {
		code, _ := outReadyz(t, cfg)
		return code == http.StatusOK
	})
}

// TestRemovalsPendingDuringOutageSurviveRestart: the presence server is
// stopped, publications are withdrawn (their removals cannot be sent),
// puaside is restarted while the server is still down, then the server
// comes back: the withdrawn publications must be gone there within 10 s,
// the others still open. Withdrawn by usrloc (an unregistration: the
// tracker remembers the closed contact across the restart) and through the
// engine API directly (nobody but the engine remembers the removal, so
// removals must be durable in the store: an engine that forgot it
// refreshes the stored publication instead).
func TestRemovalsPendingDuringOutageSurviveRestart(t *testing.T) {
	t.Run("usrloc", func(t *testing.T) {
		presence := presenceServer(t)
		cfg := outageConfig(t, presence)
		cfg.Features.Dialoginfo = false
		cfg.Usrloc.ClosedLinger = time.Second
		ps := startPuaside(t, cfg)
		reg := registrar(t, "WITH_SIPTRACE", cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()

		u1 := sipphone.NewPhone(t, "u1", "example.com")
		u2 := sipphone.NewPhone(t, "u2", "example.com")
		outRegister(ctx, t, reg, u1)
		outRegister(ctx, t, reg, u2)
		outWaitTruth(ctx, t, presence, waitLimit, "before the outage", outTruth{open: []string{"u1", "u2"}})

		presence.Stop()
		if res, err := u1.Unregister(ctx, reg.Addr()); err != nil || res.StatusCode != 200 {
			t.Fatalf("unregister u1: %v %v", res, err)
		}
		// The closed document lingers 1 s, then usrloc removes the
		// publication; with the server down the removal stays pending.
		outWaitPending(t, ps, "sip:u1@example.com")
		ps.stop()
		startPuaside(t, cfg)
		time.Sleep(2 * time.Second)
		presence.StartAgain(t)
		outWaitGone(ctx, t, presence, "u1", outTruth{open: []string{"u2"}, offline: []string{"u1"}})
	})
	t.Run("api", func(t *testing.T) {
		presence := presenceServer(t)
		cfg := outageConfig(t, presence)
		cfg.Features.Dialoginfo = false
		cfg.Features.Usrloc = false
		ps := startPuaside(t, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		keys := map[string]pua.Key{}
		for _, u := range []string{"a1", "a2"} {
			keys[u] = pua.Key{PresURI: "sip:" + u + "@example.com", Event: "presence", ID: "api"}
			body := strings.ReplaceAll(alicePIDF, "alice", u)
			if res, err := ps.d.Engine().PublishWait(ctx, pua.PublishRequest{Key: keys[u], Body: []byte(body), Flag: pua.FlagRPCPublish}); err != nil || res.Status != 200 {
				t.Fatalf("publish %s: %+v %v", u, res, err)
			}
		}
		outWaitTruth(ctx, t, presence, waitLimit, "before the outage", outTruth{open: []string{"a1", "a2"}})

		presence.Stop()
		if err := ps.d.Engine().Remove(keys["a1"]); err != nil {
			t.Fatal(err)
		}
		outWaitPending(t, ps, keys["a1"].PresURI)
		ps.stop()
		startPuaside(t, cfg)
		time.Sleep(2 * time.Second)
		presence.StartAgain(t)
		outWaitGone(ctx, t, presence, "a1", outTruth{open: []string{"a2"}, offline: []string{"a1"}})
	})
}

// outWaitPending waits until the publication of aor failed to be sent
// (the presence server is down) and is backing off.
func outWaitPending(t *testing.T, ps *puaside, aor string) {
	t.Helper()
	eventually(t, aor+"'s removal pending", func() bool {
		for _, p := range ps.d.Engine().Publications() {
			if p.Key.PresURI == aor {
				return p.State == pua.StateRetrying && p.LastStatus == 0 && p.LastReason != ""
			}
		}
		return false
	})
}

// outWaitGone waits (outageCatchUp) for the truth want at the presence
// server and for user's presentity to be gone.
func outWaitGone(ctx context.Context, t *testing.T, presence *kamailiotest.Instance, user string, want outTruth) {
	t.Helper()
	took := outWaitTruth(ctx, t, presence, outageCatchUp, "after the restart and the server's return", want)
	t.Logf("the presence server held the truth %s after its return", took.Round(time.Millisecond))
	deadline := time.Now().Add(outageCatchUp - took)
	for {
		n, err := presence.Count(ctx, "presentity", "username = ? AND event = ?", user, "presence")
		if err == nil && n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's presentity still there %s after the server's return (%v):\n%s", user, outageCatchUp, err, fcPresentityRows(ctx, t, presence))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRemovalsPendingDuringOutageSurviveSIGKILL is
// TestRemovalsPendingDuringOutageSurviveRestart with a crash instead of a
// graceful stop: the presence server is stopped, publications are
// withdrawn, puaside (the binary, in its own process) is killed with
// SIGKILL once its write-behind periods have passed, restarted while the
// server is still down, then the server comes back: the withdrawn
// publications must be gone there within 10 s, the others still open.
func TestRemovalsPendingDuringOutageSurviveSIGKILL(t *testing.T) {
	t.Run("usrloc", func(t *testing.T) {
		presence := presenceServer(t)
		cfg := outageConfig(t, presence)
		cfg.Features.Dialoginfo = false
		cfg.Usrloc.ClosedLinger = time.Second
		bin, path := puasideBinary(t), writeDaemonConfig(t, cfg)
		proc := startDaemonProc(t, "puaside", bin, path, cfg.HTTP.HTTPListen)
		api := mgmt.NewClient("http://"+cfg.HTTP.HTTPListen, "")
		reg := registrar(t, "WITH_SIPTRACE", cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()

		u1 := sipphone.NewPhone(t, "u1", "example.com")
		u2 := sipphone.NewPhone(t, "u2", "example.com")
		outRegister(ctx, t, reg, u1)
		outRegister(ctx, t, reg, u2)
		outWaitTruth(ctx, t, presence, waitLimit, "before the outage", outTruth{open: []string{"u1", "u2"}})

		presence.Stop()
		if res, err := u1.Unregister(ctx, reg.Addr()); err != nil || res.StatusCode != 200 {
			t.Fatalf("unregister u1: %v %v", res, err)
		}
		outWaitPendingAPI(ctx, t, api, "sip:u1@example.com")
		time.Sleep(outPersisted(cfg))
		proc.kill()
		startDaemonProc(t, "puaside#2", bin, path, cfg.HTTP.HTTPListen)
		time.Sleep(2 * time.Second)
		presence.StartAgain(t)
		outWaitGone(ctx, t, presence, "u1", outTruth{open: []string{"u2"}, offline: []string{"u1"}})
	})
	t.Run("api", func(t *testing.T) {
		presence := presenceServer(t)
		cfg := outageConfig(t, presence)
		cfg.Features.Dialoginfo = false
		cfg.Features.Usrloc = false
		bin, path := puasideBinary(t), writeDaemonConfig(t, cfg)
		proc := startDaemonProc(t, "puaside", bin, path, cfg.HTTP.HTTPListen)
		api := mgmt.NewClient("http://"+cfg.HTTP.HTTPListen, "")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		for _, u := range []string{"a1", "a2"} {
			body := strings.ReplaceAll(alicePIDF, "alice", u)
			res, err := api.Publish(ctx, mgmt.PublishParams{PresentityURI: "sip:" + u + "@example.com", Event: "presence", ID: "api", Body: body})
			if err != nil || res.Status != 200 {
				t.Fatalf("publish %s: %+v %v", u, res, err)
			}
		}
		outWaitTruth(ctx, t, presence, waitLimit, "before the outage", outTruth{open: []string{"a1", "a2"}})

		presence.Stop()
		// The API waits for the removal's outcome, which cannot come while
		// the server is down: the request is left to time out.
		rctx, rcancel := context.WithCancel(ctx)
		defer rcancel()
		go func() { _, _ = api.RemovePublication(rctx, "sip:a1@example.com", "presence", "api") }()
		outWaitPendingAPI(ctx, t, api, "sip:a1@example.com")
		time.Sleep(outPersisted(cfg))
		proc.kill()
		rcancel()
		startDaemonProc(t, "puaside#2", bin, path, cfg.HTTP.HTTPListen)
		time.Sleep(2 * time.Second)
		presence.StartAgain(t)
		outWaitGone(ctx, t, presence, "a1", outTruth{open: []string{"a2"}, offline: []string{"a1"}})
	})
}

// outPersisted is how long after a change it is written for sure: twice
// the longest write-behind period (the engine's update_period, the usrloc
// tracker's flush_interval), the second one for the write itself.
func outPersisted(cfg config.Config) time.Duration {
	return 2 * max(cfg.PUA.UpdatePeriod, cfg.Usrloc.FlushInterval)
}

// outWaitPendingAPI is outWaitPending through the management API of a
// daemon in another process.
func outWaitPendingAPI(ctx context.Context, t *testing.T, api *mgmt.Client, aor string) {
	t.Helper()
	eventually(t, aor+"'s removal pending", func() bool {
		l, err := api.List(ctx, mgmt.ListPublications, nil)
		if err != nil {
			return false
		}
		for _, raw := range l.Items {
			var p mgmt.Publication
			if json.Unmarshal(raw, &p) == nil && p.PresentityURI == aor {
				return p.State == pua.StateRetrying && p.LastStatus == 0 && p.LastReason != ""
			}
		}
		return false
	})
}
