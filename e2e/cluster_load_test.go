package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/internal/dbtest"
	"github.com/puaside/puaside/internal/kamailiotest"
	"github.com/puaside/puaside/internal/loadproc"
	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/shard"
	"github.com/puaside/puaside/store"
)

// Size of the registration load of the cluster tests under load.
const (
	clusterBurstUsers = 2000
	clusterBurstRate  = 300 // REGISTERs per second
	// clusterRight bounds how long after the load ends the presence
	// server must show everyone right: one lease plus one second.
	clusterRight = clusterTTL + time.Second
	// clusterInitialExpires is pua.initial_expires in these tests: the
	// lifetime of a publication an instance killed in the milliseconds
	// between its 2xx and the write of its ETag leaves at the server.
	clusterInitialExpires = 10 * time.Second
)

// loadCluster is puaside processes on one MariaDB database, a Kamailio
// registrar mirroring every REGISTER and call message to each of them
// (WITH_FANOUT; WITH_REPLICATE with one instance) and a Kamailio presence
// server on a tmpfs SQLite file, sized for bursts of registrations.
type loadCluster struct {
	bin           string
	dbURL         string
	nodes         []*clusterNode
	reg, presence *kamailiotest.Instance
}

// loadClusterOptions shape a loadCluster.
type loadClusterOptions struct {
	// nodes is the number of instances configured (and mirrored to);
	// start of them are started at once, the others by join.
	nodes, start int
	// tweak changes each instance's configuration.
	tweak func(*config.Config)
	// extraYAML is appended to each instance's configuration file (sections
	// the shared renderer does not write, such as bla).
	extraYAML func(n *clusterNode) string
}

func newLoadCluster(t testing.TB, o loadClusterOptions) *loadCluster {
	t.Helper()
	// Kamailio's default 64 MiB of shared memory does not hold the
	// transactions of a burst mirrored to three destinations.
	shm := []string{"-m", "256"}
	c := &loadCluster{bin: puasideBinary(t), dbURL: dbtest.URL(t, store.MySQL)}
	c.presence = kamailiotest.Start(t, kamailiotest.Options{
		Config: kamailiotest.ConfigPath(t, "presence.cfg"),
		DB:     kamailiotest.SQLite,
		DBDir:  tmpfsDir(),
		Args:   shm,
	})
	for i := range o.nodes {
		cfg := baseConfig(t, c.presence)
		quietPorts(t, &cfg)
		cfg.LogLevel = "info"
		cfg.DBURL = c.dbURL
		cfg.Features.BLA = false
		cfg.PUA.DefaultExpires = 60 * time.Second
		cfg.PUA.UpdatePeriod = 500 * time.Millisecond
		cfg.PUA.RequestTimeout = 3 * time.Second
		cfg.PUA.InitialExpires = clusterInitialExpires
		cfg.Usrloc.PublishExpires = 60 * time.Second
		cfg.Usrloc.FlushInterval = 500 * time.Millisecond
		cfg.Usrloc.MinExpires = time.Second
		cfg.Usrloc.ClosedLinger = 5 * time.Second
		cfg.Dialoginfo.PublishExpires = 60 * time.Second
		cfg.Dialoginfo.FlushInterval = 500 * time.Millisecond
		cfg.Dialoginfo.TerminatedLinger = 3 * time.Second
		cfg.Cluster = shard.Config{Enabled: true, InstanceID: fmt.Sprintf("p%d", i+1), TTL: clusterTTL, Shards: clusterShards}
		if o.tweak != nil {
			o.tweak(&cfg)
		}
		n := &clusterNode{id: cfg.Cluster.InstanceID, cfg: cfg}
		n.path = writeDaemonConfig(t, cfg)
		if o.extraYAML != nil {
			appendFile(t, n.path, o.extraYAML(n))
		}
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes[:o.start] {
		c.startNode(t, n)
	}
	defs := map[string]string{}
	if o.nodes == 1 {
		defs["WITH_REPLICATE"] = ""
		defs["PUASIDE_REPLICATE_URI"] = kamailiotest.Str("sip:" + hostPort(c.nodes[0].cfg.Ingest.ReplicateListen[0]))
	} else {
		defs["WITH_FANOUT"] = ""
		for i, n := range c.nodes {
			sfx := map[int]string{0: "", 1: "2", 2: "3"}[i]
			defs["PUASIDE_REPLICATE_URI"+sfx] = kamailiotest.Str("sip:" + hostPort(n.cfg.Ingest.ReplicateListen[0]))
			defs["PUASIDE_TRACE_URI"+sfx] = kamailiotest.Str("sip:" + hostPort(n.cfg.Ingest.TraceListen[0]))
		}
	}
	c.reg = kamailiotest.Start(t, kamailiotest.Options{Config: kamailiotest.ConfigPath(t, "registrar.cfg"),
		DB: kamailiotest.NoDB, Workers: 4, Args: shm, Defines: defs})
	c.balanced(t)
	return c
}

// quietPorts moves cfg's listeners to loopback ports below the kernel's
// ephemeral range, each checked free for UDP and TCP: an instance started
// later in a test (or again) finds its ports still free, where ports of
// the ephemeral range are soon taken by the sockets of a burst. HEP, which
// the fan-out does not use, is off.
func quietPorts(t testing.TB, cfg *config.Config) {
	t.Helper()
	var ports []int
	for p := 20000 + rand.IntN(12000); len(ports) < 5; p = 20000 + rand.IntN(12000) {
		if !slices.Contains(ports, p) && portFree(p) {
			ports = append(ports, p)
		}
	}
	sip, rp, tp, httpPort, pp := ports[0], ports[1], ports[2], ports[3], ports[4]
	cfg.PUA.Listen = []string{fmt.Sprintf("udp:127.0.0.1:%d", sip), fmt.Sprintf("tcp:127.0.0.1:%d", sip)}
	cfg.Ingest.ReplicateListen = []string{fmt.Sprintf("udp:127.0.0.1:%d", rp), fmt.Sprintf("tcp:127.0.0.1:%d", rp)}
	cfg.Ingest.TraceListen = []string{fmt.Sprintf("udp:127.0.0.1:%d", tp)}
	cfg.Ingest.HEPListen = nil
	cfg.HTTP.HTTPListen = fmt.Sprintf("127.0.0.1:%d", httpPort)
	cfg.PA.Listen = []string{fmt.Sprintf("udp:127.0.0.1:%d", pp), fmt.Sprintf("tcp:127.0.0.1:%d", pp)}
}

// portFree reports whether port is free on loopback for UDP and TCP.
func portFree(port int) bool {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	defer u.Close()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// appendFile appends text to the file at path.
func appendFile(t testing.TB, path, text string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(b, text...), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startNode starts n's process (again).
func (c *loadCluster) startNode(t testing.TB, n *clusterNode) {
	t.Helper()
	n.proc = startDaemonProc(t, n.id, c.bin, n.path, n.cfg.HTTP.HTTPListen)
}

// live returns the instances running.
func (c *loadCluster) live() []*clusterNode {
	var out []*clusterNode
	for _, n := range c.nodes {
		if n.proc != nil {
			select {
			case <-n.proc.exited:
			default:
				out = append(out, n)
			}
		}
	}
	return out
}

// rig is the cluster as a clusterRig, for its lease helpers.
func (c *loadCluster) rig() *clusterRig { return &clusterRig{bin: c.bin, nodes: c.nodes} }

// balanced waits until the running instances share every shard fairly.
func (c *loadCluster) balanced(t testing.TB) {
	t.Helper()
	live := c.live()
	c.rig().balancedAmong(t, live[0], len(live))
}

// owner returns the running instance holding aor's shard.
func (c *loadCluster) owner(t testing.TB, aor string) *clusterNode {
	t.Helper()
	n, _, _ := c.rig().owner(t, aor, c.live()[0])
	return n
}

// registerAll sends REGISTERs (cseq, expires) for users at rate until each
// is answered 200 (three rounds at most) and returns when the last round
// was sent.
func registerAll(ctx context.Context, t *testing.T, b *regBlaster, users []int, cseq, expires, rate int) []int {
	t.Helper()
	pending := users
	var answered []int
	for round := 0; round < 3 && len(pending) > 0; round++ {
		cs := cseq + round
		if err := pace(ctx, pending, rate, func(i int) error { return b.register(i, cs, expires) }); err != nil {
			t.Fatalf("register: %v", err)
		}
		time.Sleep(time.Second)
		var next []int
		for _, i := range pending {
			if b.answered(burstCallID(i), cs) {
				answered = append(answered, i)
			} else {
				next = append(next, i)
			}
		}
		pending = next
	}
	if len(pending) > 0 {
		t.Fatalf("%d of %d REGISTERs never answered", len(pending), len(users))
	}
	return answered
}

// burstState is the presence server's view of the burst's users.
type burstState struct {
	open, closed, missing, dups int
}

func (s burstState) String() string {
	return fmt.Sprintf("%d open, %d not open, %d without a publication, %d with more than one", s.open, s.closed, s.missing, s.dups)
}

// burstView reads the presence server's live presence rows of users: how
// many are open, how many have none, how many more than one.
func burstView(ctx context.Context, t testing.TB, ps *kamailiotest.Instance, users []int) burstState {
	t.Helper()
	rows, opened := presenceRows(ctx, t, ps)
	var s burstState
	for _, i := range users {
		u := fmt.Sprintf("burst%05d", i)
		switch n := rows[u]; {
		case n == 0:
			s.missing++
		case n > 1:
			s.dups++
		}
		if opened[u] {
			s.open++
		} else {
			s.closed++
		}
	}
	return s
}

// waitBurst polls the presence server until ok holds for the users'
// state, or until deadline; it returns the last state and whether ok held.
func waitBurst(ctx context.Context, t testing.TB, ps *kamailiotest.Instance, users []int, deadline time.Time, ok func(burstState) bool) (burstState, bool) {
	t.Helper()
	for {
		s := burstView(ctx, t, ps, users)
		if ok(s) {
			return s, true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return s, false
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// allOpen: every user open with exactly one publication.
func allOpen(n int) func(burstState) bool {
	return func(s burstState) bool { return s.open == n && s.missing == 0 && s.dups == 0 }
}

// noneOpen: no user open, none with more than one publication.
func noneOpen(s burstState) bool { return s.open == 0 && s.dups == 0 }

// upTo returns 0..n-1.
func upTo(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// checkRegisterBurst is what the cluster tests under load prove once the
// registrations are done at loadEnd: within lease_ttl + 1 s every user is
// open at the presence server, with one publication each (the
// publications a killed instance left unknown, if any, live at most
// initial_expires after kill); then everyone unregisters and within
// lease_ttl + 1 s after the last unregistration no one is open.
func checkRegisterBurst(ctx context.Context, t *testing.T, c *loadCluster, b *regBlaster, users []int, loadEnd, kill time.Time, cseq int) {
	t.Helper()
	s, ok := waitBurst(ctx, t, c.presence, users, loadEnd.Add(clusterRight), func(s burstState) bool { return s.open == len(users) })
	if !ok {
		t.Errorf("%s after the registrations: %s, want all %d open", clusterRight, s, len(users))
		explainMissing(ctx, t, c, users)
	}
	t.Logf("%s after the registrations: %s", time.Since(loadEnd).Round(time.Millisecond), s)
	if s.dups > 0 || s.missing > 0 {
		limit := loadEnd.Add(clusterRight)
		if !kill.IsZero() {
			limit = kill.Add(clusterInitialExpires + 2*time.Second)
		}
		limit = maxTime(limit, time.Now().Add(time.Second))
		s, ok = waitBurst(ctx, t, c.presence, users, limit, allOpen(len(users)))
		if !ok {
			t.Errorf("at %s after the registrations: %s, want one open publication each", time.Since(loadEnd).Round(time.Millisecond), s)
		}
		t.Logf("one publication each %s after the registrations: %s", time.Since(loadEnd).Round(time.Millisecond), s)
	}

	registerAll(ctx, t, b, users, cseq, 0, clusterBurstRate)
	unregEnd := time.Now().Add(-time.Second) // registerAll waits a second after its last round
	s, ok = waitBurst(ctx, t, c.presence, users, unregEnd.Add(clusterRight), noneOpen)
	if !ok {
		t.Errorf("%s after the unregistrations: %s, want no one open and at most one publication each", clusterRight, s)
	} else {
		t.Logf("no one open %s after the unregistrations: %s", time.Since(unregEnd).Round(time.Millisecond), s)
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// TestClusterKillMidRegisterBurst: three puaside processes on one MariaDB
// database behind a Kamailio registrar mirroring to all three; 2,000
// phones register at 300/s and one instance is killed (SIGKILL) 2.5 s into
// the burst. The survivors take its shards over and continue its
// publications from the contacts they hold (every instance ingests every
// REGISTER) and the ETags it stored: within lease_ttl + 1 s after the
// burst every phone is open at the presence server; each has exactly one
// publication there once the few the dead instance left unknown (its 2xx
// not yet written) have lived their initial_expires. Then everyone
// unregisters, and within lease_ttl + 1 s no one is open, with at most one
// publication each.
func TestClusterKillMidRegisterBurst(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := newLoadCluster(t, loadClusterOptions{nodes: 3, start: 3})
	blast := newRegBlaster(t, c.reg.Addr())
	users := upTo(clusterBurstUsers)

	sent := make(chan error, 1)
	go func() {
		sent <- pace(ctx, users, clusterBurstRate, func(i int) error { return blast.register(i, 1, 600) })
	}()
	time.Sleep(2500 * time.Millisecond)
	dead := c.nodes[1]
	dead.proc.kill()
	killedAt := time.Now()
	t.Logf("%s killed mid-burst", dead.id)
	if err := <-sent; err != nil {
		t.Fatalf("burst: %v", err)
	}
	burstEnd := time.Now()
	t.Logf("burst sent in %s", burstEnd.Sub(killedAt.Add(-2500*time.Millisecond)).Round(time.Millisecond))
	var unanswered []int
	for _, i := range users {
		if !blast.answered(burstCallID(i), 1) {
			unanswered = append(unanswered, i)
		}
	}
	if len(unanswered) > 0 {
		// Sent again (a new CSeq); the test's clock starts after them.
		t.Logf("%d REGISTERs unanswered: sent again", len(unanswered))
		registerAll(ctx, t, blast, unanswered, 2, 600, clusterBurstRate)
		burstEnd = time.Now()
	}
	checkRegisterBurst(ctx, t, c, blast, users, burstEnd, killedAt, 10)
	c.balanced(t)
	checkOnePublicationEach(ctx, t, c)
}

// checkOnePublicationEach fails when any presentity has more than one live
// publication of an event at the presence server.
func checkOnePublicationEach(ctx context.Context, t *testing.T, c *loadCluster) {
	t.Helper()
	rows, err := c.presence.DB().QueryContext(ctx, "SELECT username, event, COUNT(*) FROM presentity WHERE expires > ? GROUP BY username, domain, event HAVING COUNT(*) > 1", time.Now().Unix())
	if err != nil {
		t.Fatalf("presentity rows: %v", err)
	}
	defer rows.Close()
	for rows.Next() {
		var user, ev string
		var n int
		if err := rows.Scan(&user, &ev, &n); err != nil {
			t.Fatal(err)
		}
		t.Errorf("%s %s: %d live publications at the presence server", user, ev, n)
	}
}

// clusterCalls is the number of calls of TestClusterCallsLeaveNoRows.
const clusterCalls = 12

// dialogRows returns the presence server's dialog presentity rows (expired
// ones not yet cleaned included) by user, with their bodies.
func dialogRows(ctx context.Context, t *testing.T, ps *kamailiotest.Instance) map[string][]string {
	t.Helper()
	q, err := ps.DB().QueryContext(ctx, "SELECT username, body FROM presentity WHERE event = 'dialog'")
	if err != nil {
		t.Fatalf("presentity rows: %v", err)
	}
	defer q.Close()
	out := map[string][]string{}
	for q.Next() {
		var user string
		var body []byte
		if err := q.Scan(&user, &body); err != nil {
			t.Fatalf("presentity rows: %v", err)
		}
		out[user] = append(out[user], string(body))
	}
	if err := q.Err(); err != nil {
		t.Fatalf("presentity rows: %v", err)
	}
	return out
}

// puaDialogRows returns the pua table's dialog rows and the dialoginfo
// tracker's stored calls in the cluster's database.
func puaDialogRows(ctx context.Context, t *testing.T, dbURL string) (pub []string, calls []string) {
	t.Helper()
	db, err := store.Open(ctx, dbURL, "pua")
	if err != nil {
		t.Fatalf("open %s: %v", dbURL, err)
	}
	defer db.Close()
	recs, err := db.LoadRecords(ctx)
	if err != nil {
		t.Fatalf("pua rows: %v", err)
	}
	for _, r := range recs {
		if r.EventName == "dialog" {
			pub = append(pub, fmt.Sprintf("%s etag=%q expires=%d", r.PresURI, r.ETag, r.Expires))
		}
	}
	ds, err := db.LoadDialogs(ctx)
	if err != nil {
		t.Fatalf("stored calls: %v", err)
	}
	for _, d := range ds {
		calls = append(calls, fmt.Sprintf("%+v", d))
	}
	return pub, calls
}

// TestClusterCallsLeaveNoRows: three instances, twelve calls through the
// registrar (mirrored to all three); the owner of the first callee's
// shard is killed (SIGKILL) mid-call and every call hangs up at once.
// Within lease_ttl + 1 s every lamp is dark at the presence server (the
// dead instance's through its successor); once the terminated documents
// have lingered (dialoginfo.terminated_linger) and the presence server has
// cleaned them, neither the pua table nor the presence server's
// presentity table holds a dialog row, and the tracker keeps no call.
func TestClusterCallsLeaveNoRows(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := newLoadCluster(t, loadClusterOptions{nodes: 3, start: 3})
	type pair struct {
		caller, callee *sipphone.Phone
		call           *sipphone.Call
	}
	pairs := make([]*pair, clusterCalls)
	for i := range pairs {
		p := &pair{caller: sipphone.NewPhone(t, fmt.Sprintf("caller%02d", i), "example.com"),
			callee: sipphone.NewPhone(t, fmt.Sprintf("callee%02d", i), "example.com")}
		for _, ph := range []*sipphone.Phone{p.caller, p.callee} {
			res, err := ph.Register(ctx, c.reg.Addr(), 600)
			if err != nil || res.StatusCode != 200 {
				t.Fatalf("register %s: %v %v", ph.User, res, err)
			}
		}
		pairs[i] = p
	}
	for _, p := range pairs {
		call, err := p.caller.Invite(ctx, c.reg.Addr(), p.callee.AoR())
		if err != nil {
			t.Fatalf("invite %s: %v", p.callee.User, err)
		}
		if err := call.WaitAnswer(ctx); err != nil {
			t.Fatalf("%s answers: %v", p.callee.User, err)
		}
		p.call = call
	}
	lamps := func(want string) func() bool {
		return func() bool {
			rows := dialogRows(ctx, t, c.presence)
			for _, p := range pairs {
				for _, u := range []string{p.caller.User, p.callee.User} {
					if len(rows[u]) != 1 || !fcDialogIn(p.call.CallID(), want)(rows[u][0]) {
						return false
					}
				}
			}
			return true
		}
	}
	eventually(t, "every lamp lit, one dialog publication each", lamps("confirmed"))
	// The owners' ETags reach the database.
	time.Sleep(time.Second)

	callee := pairs[0].callee.AoR()
	dead := c.owner(t, callee.String())
	dead.proc.kill()
	killedAt := time.Now()
	t.Logf("%s, owner of %s's shard, killed mid-call", dead.id, pairs[0].callee.User)
	for _, p := range pairs {
		if err := p.call.Bye(ctx); err != nil {
			t.Fatalf("%s hangs up: %v", p.caller.User, err)
		}
	}
	dark := lamps("terminated")
	for !dark() {
		if time.Since(killedAt) > clusterRight+time.Second {
			t.Fatalf("lamps not dark %s after the kill:\n%s", time.Since(killedAt).Round(time.Millisecond), fcPresentityRows(ctx, t, c.presence))
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(killedAt)
	t.Logf("every lamp dark %s after the kill", took.Round(time.Millisecond))
	if took > clusterRight {
		t.Errorf("lamps dark %s after the kill, want within lease_ttl + 1 s (%s)", took, clusterRight)
	}

	// terminated_linger (3 s), then the presence server's clean period
	// (10 s): no dialog row anywhere.
	deadline := time.Now().Add(3*time.Second + 10*time.Second + 10*time.Second)
	for {
		rows := dialogRows(ctx, t, c.presence)
		pub, calls := puaDialogRows(ctx, t, c.dbURL)
		if len(rows) == 0 && len(pub) == 0 && len(calls) == 0 {
			t.Logf("no dialog row left %s after the hang-ups", time.Since(killedAt).Round(time.Second))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s after the hang-ups: presence server dialog rows %v\npua dialog rows %v\nstored calls %v",
				time.Since(killedAt).Round(time.Second), rows, pub, calls)
		}
		time.Sleep(time.Second)
	}
	checkOnePublicationEach(ctx, t, c)
}

// TestClusterJoinLeaveUnderLoad: two instances on one MariaDB database
// while 2,000 phones register at 300/s through a registrar mirroring to
// three; 1.5 s into the load the third instance starts (it loads the
// contacts the others stored and takes its fair share of the shards), 4 s
// into it the first stops (SIGTERM: it writes its rows and releases its
// shards). Nothing is lost: within lease_ttl + 1 s after the load every
// phone is open at the presence server with exactly one publication;
// after everyone unregisters no one is open.
func TestClusterJoinLeaveUnderLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := newLoadCluster(t, loadClusterOptions{nodes: 3, start: 2})
	blast := newRegBlaster(t, c.reg.Addr())
	users := upTo(clusterBurstUsers)

	start := time.Now()
	sent := make(chan error, 1)
	go func() {
		sent <- pace(ctx, users, clusterBurstRate, func(i int) error { return blast.register(i, 1, 600) })
	}()
	time.Sleep(1500 * time.Millisecond)
	joiner, leaver := c.nodes[2], c.nodes[0]
	c.startNode(t, joiner)
	t.Logf("%s joined %s into the load", joiner.id, time.Since(start).Round(time.Millisecond))
	time.Sleep(time.Until(start.Add(4 * time.Second)))
	leaver.proc.term()
	t.Logf("%s left (SIGTERM) %s into the load", leaver.id, time.Since(start).Round(time.Millisecond))
	if err := <-sent; err != nil {
		t.Fatalf("load: %v", err)
	}
	loadEnd := time.Now()
	var unanswered []int
	for _, i := range users {
		if !blast.answered(burstCallID(i), 1) {
			unanswered = append(unanswered, i)
		}
	}
	if len(unanswered) > 0 {
		t.Logf("%d REGISTERs unanswered: sent again", len(unanswered))
		registerAll(ctx, t, blast, unanswered, 2, 600, clusterBurstRate)
		loadEnd = time.Now()
	}
	for _, l := range clusterLeases(t, joiner) {
		if l.Owner == leaver.id {
			t.Errorf("shard %d still held by %s after its clean stop", l.Shard, leaver.id)
		}
	}
	checkRegisterBurst(ctx, t, c, blast, users, loadEnd, time.Time{}, 10)
	c.balanced(t)
	checkOnePublicationEach(ctx, t, c)
}

// explainMissing logs, for a few users without an open publication, their
// shard's owner and what each running instance holds for them.
func explainMissing(ctx context.Context, t *testing.T, c *loadCluster, users []int) {
	t.Helper()
	q, err := c.presence.DB().QueryContext(ctx, "SELECT username, body FROM presentity WHERE event = 'presence' AND expires > ?", time.Now().Unix())
	if err != nil {
		t.Logf("explain: %v", err)
		return
	}
	open := map[string]bool{}
	for q.Next() {
		var u string
		var body []byte
		if q.Scan(&u, &body) == nil && strings.Contains(string(body), "<basic>open</basic>") {
			open[u] = true
		}
	}
	q.Close()
	hc := &http.Client{Timeout: 5 * time.Second}
	for _, l := range clusterLeases(t, c.live()[0]) {
		t.Logf("explain: lease %+v", l)
	}
	shown := 0
	for _, i := range users {
		u := fmt.Sprintf("burst%05d", i)
		if open[u] || shown >= 5 {
			continue
		}
		shown++
		aor := "sip:" + u + "@example.com"
		t.Logf("explain: %s (shard %d) not open", u, shard.Of(aor, clusterShards))
		if rows, err := c.presence.DB().QueryContext(ctx, "SELECT etag, expires, received_time, body FROM presentity WHERE username = ?", u); err == nil {
			for rows.Next() {
				var etag string
				var exp, recv int64
				var body []byte
				if rows.Scan(&etag, &exp, &recv, &body) == nil {
					t.Logf("explain: presence server row etag=%s expires=%d received=%d open=%t (now %d)", etag, exp, recv,
						strings.Contains(string(body), "<basic>open</basic>"), time.Now().Unix())
				}
			}
			rows.Close()
		}
		for _, n := range c.live() {
			for _, path := range []string{"/v1/registrations?presentity=", "/v1/publications?presentity="} {
				resp, err := hc.Get("http://" + n.cfg.HTTP.HTTPListen + path + url.QueryEscape(aor))
				if err != nil {
					t.Logf("explain: %s %s: %v", n.id, path, err)
					continue
				}
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
				resp.Body.Close()
				t.Logf("explain: %s %s: %d %s", n.id, path, resp.StatusCode, body)
			}
		}
	}
}

// sqlCounter is a TCP relay in front of MariaDB that counts the commands
// its clients send, by MySQL command byte: the statements of the instances
// of one benchmark only (the server's own counters are global, and the
// server is shared with other test runs). A command is a client packet
// with sequence number 0; its first byte is the command (0x03 COM_QUERY,
// 0x17 COM_STMT_EXECUTE, 0x16 COM_STMT_PREPARE, ...).
type sqlCounter struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	counts map[byte]int64
}

func newSQLCounter(tb testing.TB, target string) *sqlCounter {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	c := &sqlCounter{ln: ln, target: target, counts: map[byte]int64{}}
	go c.serve()
	tb.Cleanup(func() { ln.Close() })
	return c
}

func (c *sqlCounter) addr() string { return c.ln.Addr().String() }

func (c *sqlCounter) serve() {
	for {
		cl, err := c.ln.Accept()
		if err != nil {
			return
		}
		go c.relay(cl)
	}
}

func (c *sqlCounter) relay(cl net.Conn) {
	defer cl.Close()
	srv, err := net.Dial("tcp", c.target)
	if err != nil {
		return
	}
	defer srv.Close()
	go func() {
		_, _ = io.Copy(cl, srv)
		cl.Close()
	}()
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(cl, hdr[:]); err != nil {
			return
		}
		n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
		pkt := make([]byte, 4+n)
		copy(pkt, hdr[:])
		if _, err := io.ReadFull(cl, pkt[4:]); err != nil {
			return
		}
		if hdr[3] == 0 && n > 0 {
			c.mu.Lock()
			c.counts[pkt[4]]++
			c.mu.Unlock()
		}
		if _, err := srv.Write(pkt); err != nil {
			return
		}
	}
}

// statements returns the statements sent so far (queries and executions
// of prepared statements).
func (c *sqlCounter) statements() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[0x03] + c.counts[0x17]
}

// loadAvg is the first field of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

// BenchmarkClusterThroughput: REGISTER → PUBLISH with 1, 2 and 3 puaside
// processes on one MariaDB database (cluster on, lease_ttl 3 s, 8 shards,
// usrloc only) behind the real Kamailio registrar (WITH_REPLICATE to the
// one instance, WITH_FANOUT to two or three: every instance ingests every
// REGISTER), publishing to a Kamailio presence server on a tmpfs SQLite
// file. Each sub-benchmark first counts the statements of the idle cluster
// over 10 s (the lease rounds), through a relay in front of MariaDB that
// counts its clients' commands (the server's Com_* counters are global and
// the server is shared), then sends 6,000 REGISTERs at 3,000/s
// (PUASIDE_BENCH_USERS, PUASIDE_BENCH_RATE) and
// measures the time from the first to every answered user open at the
// presence server (users/s), the CPU of each puaside process, of the
// registrar and of the presence server (/proc), and the statements per
// registration.
//
//	go test -run '^$' -bench BenchmarkClusterThroughput -benchtime 1x ./e2e/
func BenchmarkClusterThroughput(b *testing.B) {
	users := benchEnvInt(b, "PUASIDE_BENCH_USERS", 6000)
	rate := benchEnvInt(b, "PUASIDE_BENCH_RATE", 3000)
	const idle = 10 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b.Logf("load average at the start: %s", loadAvg())
	for _, n := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			for b.Loop() {
				dbURL := dbtest.URL(b, store.MySQL)
				counter := newSQLCounter(b, hostPortOf(b, dbURL))
				c := newLoadCluster(b, loadClusterOptions{nodes: n, start: n, tweak: func(cfg *config.Config) {
					cfg.DBURL = strings.Replace(dbURL, hostPortOf(b, dbURL), counter.addr(), 1)
					cfg.Features.Dialoginfo = false
				}})
				s0 := counter.statements()
				time.Sleep(idle)
				leases := float64(counter.statements()-s0) / idle.Seconds()

				blast := newRegBlaster(b, c.reg.Addr())
				cpu := func() (pua []time.Duration, reg, pres time.Duration) {
					for _, nd := range c.nodes {
						st, err := loadproc.ReadStat(nd.proc.cmd.Process.Pid)
						if err != nil {
							b.Fatal(err)
						}
						pua = append(pua, st.CPU())
					}
					reg, err := loadproc.TreeCPU(c.reg.Pid())
					if err != nil {
						b.Fatal(err)
					}
					pres, err = loadproc.TreeCPU(c.presence.Pid())
					if err != nil {
						b.Fatal(err)
					}
					return pua, reg, pres
				}
				la0 := loadAvg()
				pua0, reg0, pres0 := cpu()
				d0 := counter.statements()
				start := time.Now()
				if err := pace(ctx, upTo(users), rate, func(i int) error { return blast.register(i, 1, 600) }); err != nil {
					b.Fatal(err)
				}
				var answered []int
				for i := range users {
					if blast.answered(burstCallID(i), 1) {
						answered = append(answered, i)
					}
				}
				s, ok := waitBurst(ctx, b, c.presence, answered, time.Now().Add(time.Minute), func(s burstState) bool { return s.open == len(answered) })
				took := time.Since(start)
				pua1, reg1, pres1 := cpu()
				load := counter.statements() - d0
				if !ok {
					b.Fatalf("not every answered user open a minute after the load: %s", s)
				}
				var total time.Duration
				per := make([]string, n)
				for i := range pua1 {
					d := pua1[i] - pua0[i]
					total += d
					per[i] = fmt.Sprintf("%.2f", d.Seconds())
				}
				b.Logf("%d instance(s): %d users at %d/s (%d answered) all open after %s (%.0f users/s); puaside CPU %s s (total %.2f s), registrar %.2f s, presence server %.2f s; load average %s → %s",
					n, users, rate, len(answered), took.Round(time.Millisecond), float64(len(answered))/took.Seconds(), strings.Join(per, " + "), total.Seconds(),
					(reg1 - reg0).Seconds(), (pres1 - pres0).Seconds(), la0, loadAvg())
				b.Logf("database: idle cluster %.1f statements/s (lease rounds); during the load %d statements, %.0f/s, %.2f per registration",
					leases, load, float64(load)/took.Seconds(), float64(load)/float64(len(answered)))
				b.ReportMetric(float64(len(answered))/took.Seconds(), "users/s")
				b.ReportMetric(total.Seconds(), "puaside-cpu-s")
				b.ReportMetric((reg1 - reg0).Seconds(), "registrar-cpu-s")
				b.ReportMetric(leases, "lease-stmt/s")
				b.ReportMetric(float64(load)/float64(len(answered)), "stmt/registration")
			}
		})
	}
}

// hostPortOf returns the host:port of a mysql:// db_url.
func hostPortOf(tb testing.TB, dbURL string) string {
	tb.Helper()
	rest := strings.TrimPrefix(dbURL, "mysql://")
	if i := strings.LastIndexByte(rest[:strings.IndexByte(rest, '/')], '@'); i >= 0 {
		rest = rest[i+1:]
	}
	return rest[:strings.IndexByte(rest, '/')]
}

// TestClusterSharedLineOwnerKilledMidCall: a shared line (BLA) on three
// instances: two Polycom phones register line100 through the registrar
// (mirrored to all three); only the owner of the line's shard subscribes
// to them (one SUBSCRIBE per phone) and publishes the composed line. Phone
// A is in a call on the line when that owner is killed (SIGKILL): within
// lease_ttl + 1 s the successor continues each phone's subscription under
// its stored dialog (an in-dialog SUBSCRIBE, with its own Contact), the
// phones answer it with their state (RFC 6665), and the line's lamp at the
// presence server stays lit with A's call throughout; A hangs up and the
// line goes free through the successor; the presence server holds one
// publication of the line.
func TestClusterSharedLineOwnerKilledMidCall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := newLoadCluster(t, loadClusterOptions{nodes: 3, start: 3,
		tweak: func(cfg *config.Config) {
			cfg.Features.BLA = true
			cfg.Features.Dialoginfo = false
		},
		extraYAML: func(*clusterNode) string {
			return "bla:\n  lines:\n    - aor: " + strconv.Quote(blaLine) + "\n"
		}})
	a := newPolycom(t, "line100", "example.com")
	b := newPolycom(t, "line100", "example.com")
	phones := map[string]*polycom{"A": a, "B": b}
	for name, p := range phones {
		if err := p.watchLine(ctx, c.presence.Addr(), 600); err != nil {
			t.Fatalf("phone %s: %v", name, err)
		}
		res, err := p.register(ctx, c.reg.Addr(), 300)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("phone %s: register: %v %v", name, res, err)
		}
	}
	for name, p := range phones {
		if err := p.waitUntil(ctx, "an initial NOTIFY answered", func() bool { return len(p.codes) >= 1 }); err != nil {
			t.Fatalf("phone %s: %v", name, err)
		}
	}
	send := func(p *polycom, name, body string) {
		t.Helper()
		code, err := p.notify(ctx, "active;expires=300", body)
		if err != nil || code != 200 {
			t.Fatalf("phone %s: NOTIFY: %d %v", name, code, err)
		}
	}
	send(a, "A", blaDoc(blaLine, 1, "partial", blaDialog{"a-call-1", "trying", "1"}))
	send(a, "A", blaDoc(blaLine, 2, "partial", blaDialog{"a-call-1", "confirmed", "1"}))
	if _, err := b.waitNote(ctx, "A's confirmed call", func(n polNote) bool { return blaDialogState(n.Body, "a-call-1") == "confirmed" }); err != nil {
		t.Fatalf("phone B: %v; NOTIFYs %+v", err, b.notes())
	}
	for name, p := range phones {
		if n := len(p.subscribes()); n != 1 {
			t.Errorf("phone %s: %d SUBSCRIBEs before the kill, want 1 (from the line's owner only): %+v", name, n, p.subscribes())
		}
	}
	// The owner's ETag and subscription dialogs reach the database.
	time.Sleep(time.Second)
	notesBefore := len(b.notes())

	dead := c.owner(t, blaLine)
	deadContact := "sip:puaside@" + hostPort(dead.cfg.PUA.Listen[0])
	dead.proc.kill()
	killedAt := time.Now()
	t.Logf("%s, owner of the line's shard, killed mid-call", dead.id)
	// Each phone gets the successor's in-dialog SUBSCRIBE and answers it
	// with its state.
	for name, p := range phones {
		if err := p.waitUntil(ctx, "the successor's SUBSCRIBE", func() bool {
			subs := p.subs // p.mu held
			last := subs[len(subs)-1]
			return len(subs) > 1 && last.InDialog && len(last.Contacts) == 1 && last.Contacts[0] != deadContact
		}); err != nil {
			t.Fatalf("phone %s: %v: %+v", name, err, p.subscribes())
		}
		took := time.Since(killedAt)
		t.Logf("phone %s: subscription continued by the successor %s after the kill", name, took.Round(time.Millisecond))
		if took > clusterRight {
			t.Errorf("phone %s: subscription continued %s after the kill, want within lease_ttl + 1 s", name, took)
		}
	}
	send(a, "A", blaDoc(blaLine, 3, "full", blaDialog{"a-call-1", "confirmed", "1"}))
	send(b, "B", blaDoc(blaLine, 1, "full"))
	time.Sleep(time.Second)
	after := b.notes()[notesBefore:]
	t.Logf("%d line NOTIFYs to B between the kill and A's hang-up", len(after))
	if len(after) == 0 {
		t.Error("B was told nothing of the line after the takeover (the successor's publications never reached it)")
	}
	for i, n := range after {
		if st := blaDialogState(n.Body, "a-call-1"); st != "confirmed" {
			t.Errorf("line NOTIFY %d after the kill shows A's call %q, want confirmed:\n%s", i+1, st, n.Body)
		}
	}
	send(a, "A", blaDoc(blaLine, 4, "partial", blaDialog{"a-call-1", "terminated", "1"}))
	if _, err := b.waitNote(ctx, "the line free through the successor", func(n polNote) bool {
		ids, ok := blaHolders(n.Body, "1")
		return ok && len(ids) == 0
	}); err != nil {
		t.Fatalf("phone B: %v; NOTIFYs %+v", err, b.notes())
	}
	fcCheckPresentities(ctx, t, c.presence, "after the takeover", map[string]int{polSLA: 1})
	checkOnePublicationEach(ctx, t, c)
}
