package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/internal/dbtest"
	"github.com/puaside/puaside/internal/kamailiotest"
	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/shard"
	"github.com/puaside/puaside/store"
)

const (
	clusterTTL    = 3 * time.Second
	clusterShards = 8
)

// clusterNode is one puaside process of the cluster tests.
type clusterNode struct {
	id   string
	cfg  config.Config
	path string
	proc *daemonProc
}

// shardRow is one row of GET /v1/shards.
type shardRow struct {
	Shard int    `json:"shard"`
	Owner string `json:"owner"`
	Epoch int64  `json:"epoch"`
	Mine  bool   `json:"mine"`
}

// clusterLeases reads GET /v1/shards from a node.
func clusterLeases(t testing.TB, n *clusterNode) []shardRow {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get("http://" + n.cfg.HTTP.HTTPListen + "/v1/shards?limit=1000")
	if err != nil {
		t.Fatalf("%s /v1/shards: %v", n.id, err)
	}
	defer resp.Body.Close()
	var l struct {
		Items []shardRow `json:"items"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s /v1/shards: %d %v", n.id, resp.StatusCode, err)
	}
	return l.Items
}

// clusterRig is three puaside processes on one MariaDB database, a
// Kamailio registrar mirroring to all three and a Kamailio presence
// server, with alice and bob registered and watched.
type clusterRig struct {
	bin                string
	nodes              []*clusterNode
	reg, presence      *kamailiotest.Instance
	alice, bob         *sipphone.Phone
	presAlice, presBob *sipphone.Watcher
	dlgBob             *sipphone.Watcher
}

// owner returns the instance holding aor's shard, asking from.
func (r *clusterRig) owner(t testing.TB, aor string, from *clusterNode) (*clusterNode, int, int64) {
	t.Helper()
	s := shard.Of(aor, clusterShards)
	for _, l := range clusterLeases(t, from) {
		if l.Shard == s {
			for _, n := range r.nodes {
				if n.id == l.Owner {
					return n, s, l.Epoch
				}
			}
		}
	}
	t.Fatalf("no owner of %s's shard %d", aor, s)
	return nil, 0, 0
}

// balanced waits until every shard is held by the live instances, each at
// most its fair share, as from sees it.
func (r *clusterRig) balanced(t testing.TB, from *clusterNode) {
	r.balancedAmong(t, from, len(r.nodes))
}

// balancedAmong is balanced with live instances alive.
func (r *clusterRig) balancedAmong(t testing.TB, from *clusterNode, live int) {
	t.Helper()
	eventually(t, "every shard held, each instance at most its fair share", func() bool {
		leases := clusterLeases(t, from)
		per := map[string]int{}
		for _, l := range leases {
			if l.Owner == "" {
				return false
			}
			per[l.Owner]++
		}
		fair := (clusterShards + live - 1) / live
		for _, n := range per {
			if n > fair {
				return false
			}
		}
		return len(leases) == clusterShards && len(per) == live
	})
}

func newClusterRig(ctx context.Context, t testing.TB) *clusterRig {
	t.Helper()
	r := &clusterRig{bin: puasideBinary(t)}
	dbURL := dbtest.URL(t, store.MySQL)
	r.presence = presenceServer(t)
	presence := r.presence
	for i := range 3 {
		cfg := baseConfig(t, presence)
		cfg.DBURL = dbURL
		cfg.Features.BLA = false
		cfg.PUA.DefaultExpires = 60 * time.Second
		cfg.PUA.UpdatePeriod = 500 * time.Millisecond
		cfg.PUA.RequestTimeout = 3 * time.Second
		cfg.Usrloc.PublishExpires = 60 * time.Second
		cfg.Usrloc.FlushInterval = 500 * time.Millisecond
		cfg.Usrloc.MinExpires = time.Second
		cfg.Dialoginfo.PublishExpires = 60 * time.Second
		cfg.Dialoginfo.FlushInterval = 500 * time.Millisecond
		cfg.Cluster = shard.Config{Enabled: true, InstanceID: fmt.Sprintf("p%d", i+1), TTL: clusterTTL, Shards: clusterShards}
		n := &clusterNode{id: cfg.Cluster.InstanceID, cfg: cfg}
		n.path = writeDaemonConfig(t, cfg)
		r.nodes = append(r.nodes, n)
	}
	for _, n := range r.nodes {
		n.proc = startDaemonProc(t, n.id, r.bin, n.path, n.cfg.HTTP.HTTPListen)
	}
	defs := map[string]string{"WITH_FANOUT": ""}
	for i, n := range r.nodes {
		sfx := map[int]string{0: "", 1: "2", 2: "3"}[i]
		defs["PUASIDE_REPLICATE_URI"+sfx] = kamailiotest.Str("sip:" + hostPort(n.cfg.Ingest.ReplicateListen[0]))
		defs["PUASIDE_TRACE_URI"+sfx] = kamailiotest.Str("sip:" + hostPort(n.cfg.Ingest.TraceListen[0]))
	}
	r.reg = kamailiotest.Start(t, kamailiotest.Options{Config: kamailiotest.ConfigPath(t, "registrar.cfg"),
		DB: kamailiotest.NoDB, Defines: defs})
	r.balanced(t, r.nodes[0])

	r.alice = sipphone.NewPhone(t, "alice", "example.com")
	r.bob = sipphone.NewPhone(t, "bob", "example.com")
	watcher := sipphone.NewPhone(t, "watcher", "example.com")
	watch := func(ph *sipphone.Phone, ev string, o sipphone.WatchOptions) *sipphone.Watcher {
		t.Helper()
		o.Expires = 3600
		w, err := watcher.Watch(ctx, presence.Addr(), ph.AoR(), ev, o)
		if err != nil {
			t.Fatalf("watch %s %s: %v", ev, ph.User, err)
		}
		return w
	}
	r.presAlice = watch(r.alice, "presence", sipphone.WatchOptions{})
	r.presBob = watch(r.bob, "presence", sipphone.WatchOptions{})
	r.dlgBob = watch(r.bob, "dialog", sipphone.WatchOptions{Accept: "application/dialog-info+xml"})
	for _, ph := range []*sipphone.Phone{r.alice, r.bob} {
		res, err := ph.Register(ctx, r.reg.Addr(), 600)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("register %s: %v %v", ph.User, res, err)
		}
	}
	waitNotify(ctx, t, r.presAlice, waitLimit, "alice open", pidfOpen(r.alice))
	waitNotify(ctx, t, r.presBob, waitLimit, "bob open", pidfOpen(r.bob))
	return r
}

// TestClusterThreeInstancesTakeOver: three puaside processes on one
// MariaDB database behind a real Kamailio registrar that mirrors every
// REGISTER and call message to all three (WITH_FANOUT), publishing to a
// real Kamailio presence server. The instance owning bob's shard is killed
// (SIGKILL) mid-call; bob hangs up: his lamp goes dark within lease_ttl + 1
// s, through the new owner continuing the stored ETag (one presentity row
// per presentity at the server). Then the owner of alice's shard is paused
// (SIGSTOP) past its lease, alice unregisters (closed through the new
// owner), and once resumed (SIGCONT) the paused instance sends nothing
// stale: alice stays closed and no row is duplicated.
func TestClusterThreeInstancesTakeOver(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := newClusterRig(ctx, t)
	nodes, presence, reg := r.nodes, r.presence, r.reg
	alice, bob, presAlice, dlgBob := r.alice, r.bob, r.presAlice, r.dlgBob
	owner := func(aor string, from *clusterNode) (*clusterNode, int, int64) { return r.owner(t, aor, from) }

	bob.SetPolicy(sipphone.KeepRinging)
	call, err := alice.Invite(ctx, reg.Addr(), bob.AoR())
	if err != nil {
		t.Fatalf("invite: %v", err)
	}
	var in *sipphone.IncomingCall
	for in == nil {
		select {
		case ic := <-bob.Incoming():
			if ic.Request.CallID().Value() == call.CallID() {
				in = ic
			}
		case <-ctx.Done():
			t.Fatal("bob never rang")
		}
	}
	in.Answer()
	if err := call.WaitAnswer(ctx); err != nil {
		t.Fatalf("answer: %v", err)
	}
	waitNotify(ctx, t, dlgBob, waitLimit, "bob confirmed", fcDialogIn(call.CallID(), "confirmed"))
	fcCheckPresentities(ctx, t, presence, "in call", map[string]int{"presence": 1, "dialog": 1})
	// Let the owners' rows (ETags) reach the database.
	time.Sleep(time.Second)

	// SIGKILL the owner of bob's shard mid-call; bob hangs up at once.
	dead, bobShard, bobEpoch := owner("sip:bob@example.com", nodes[0])
	t.Logf("bob's shard %d (epoch %d) is held by %s: SIGKILL", bobShard, bobEpoch, dead.id)
	dead.proc.kill()
	killedAt := time.Now()
	if err := in.Bye(ctx); err != nil {
		t.Fatalf("bob's BYE: %v", err)
	}
	waitNotify(ctx, t, dlgBob, clusterTTL+time.Second+500*time.Millisecond, "bob terminated after the takeover",
		fcDialogIn(call.CallID(), "terminated"))
	took := time.Since(killedAt)
	t.Logf("bob's lamp dark %s after SIGKILL of its owner", took.Round(time.Millisecond))
	if took > clusterTTL+time.Second {
		t.Errorf("lamp right %s after the kill, want within lease_ttl + 1s (%s)", took, clusterTTL+time.Second)
	}
	var live []*clusterNode
	for _, n := range nodes {
		if n != dead {
			live = append(live, n)
		}
	}
	for _, l := range clusterLeases(t, live[0]) {
		if l.Shard == bobShard && (l.Owner == dead.id || l.Epoch != bobEpoch+1) {
			t.Errorf("bob's shard after the kill: %+v, want a survivor at epoch %d", l, bobEpoch+1)
		}
	}
	fcCheckPresentities(ctx, t, presence, "after the takeover", map[string]int{"presence": 1, "dialog": 1})

	// The dead instance's shards settle on the survivors, and their last
	// ETags reach the database (a pause within the milliseconds of a group
	// commit loses one, as a crash does: see the README).
	r.balancedAmong(t, live[0], len(live))
	time.Sleep(time.Second)

	// SIGSTOP the owner of alice's shard past its lease.
	paused, aliceShard, _ := owner("sip:alice@example.com", live[0])
	t.Logf("alice's shard %d is held by %s: SIGSTOP", aliceShard, paused.id)
	if err := syscall.Kill(paused.proc.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			_ = syscall.Kill(paused.proc.cmd.Process.Pid, syscall.SIGCONT)
		}
	}()
	var other *clusterNode
	for _, n := range live {
		if n != paused {
			other = n
		}
	}
	eventually(t, "alice's shard taken from the paused instance", func() bool {
		for _, l := range clusterLeases(t, other) {
			if l.Shard == aliceShard {
				return l.Owner == other.id
			}
		}
		return false
	})
	res, err := alice.Unregister(ctx, reg.Addr())
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("unregister alice: %v %v", res, err)
	}
	waitNotify(ctx, t, presAlice, waitLimit, "alice closed through the new owner", pidfClosed)
	if err := syscall.Kill(paused.proc.cmd.Process.Pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	// The resumed instance's timers fire at once: whatever it still had
	// queued must not reach the server.
	time.Sleep(2 * clusterTTL)
	ns := presAlice.Notifications()
	if len(ns) == 0 || !pidfClosed(ns[len(ns)-1].Body) {
		t.Errorf("alice's lamp changed after the paused instance resumed:\n%s", notifyBodies(presAlice))
	}
	fcCheckPresentities(ctx, t, presence, "after SIGCONT", map[string]int{"presence": 1, "dialog": 1})
	if logs := paused.proc.logs.String(); !strings.Contains(logs, "shard lease lost") {
		t.Errorf("the resumed instance did not notice it lost its leases:\n%s", logs)
	}
}

// BenchmarkClusterTakeover kills (SIGKILL) the owner of bob's shard 20
// times, each time changing bob's registration at once (unregister, then
// register again on the next kill), and measures the time from the kill to
// the presence server's NOTIFY of the new state, sent by the successor. The
// killed instance is started again and the shards rebalanced before the
// next kill. It reports p50 and max over the kills (lease_ttl 3 s).
func BenchmarkClusterTakeover(b *testing.B) {
	const kills = 20
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	r := newClusterRig(ctx, b)
	var took []time.Duration
	for b.Loop() {
		took = took[:0]
		for i := range kills {
			var from *clusterNode
			for _, n := range r.nodes {
				if n.proc != nil {
					from = n
					break
				}
			}
			// The owner's last ETag is in the database (a kill within the
			// milliseconds of its group commit loses it, see the README).
			time.Sleep(time.Second)
			dead, _, _ := r.owner(b, "sip:bob@example.com", from)
			dead.proc.kill()
			killedAt := time.Now()
			want := pidfClosed
			if i%2 == 0 {
				res, err := r.bob.Unregister(ctx, r.reg.Addr())
				if err != nil || res.StatusCode != 200 {
					b.Fatalf("unregister bob: %v %v", res, err)
				}
			} else {
				res, err := r.bob.Register(ctx, r.reg.Addr(), 600)
				if err != nil || res.StatusCode != 200 {
					b.Fatalf("register bob: %v %v", res, err)
				}
				want = pidfOpen(r.bob)
			}
			waitNotify(ctx, b, r.presBob, 3*clusterTTL, fmt.Sprintf("bob's new state after kill %d", i+1), want)
			took = append(took, time.Since(killedAt))
			dead.proc = startDaemonProc(b, dead.id, r.bin, dead.path, dead.cfg.HTTP.HTTPListen)
			r.balanced(b, dead)
		}
	}
	fcCheckPresentities(ctx, b, r.presence, "after the kills", map[string]int{"presence": 1})
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Milliseconds()), "ms-p50")
	b.ReportMetric(float64(took[len(took)-1].Milliseconds()), "ms-max")
	b.ReportMetric(float64(took[0].Milliseconds()), "ms-min")
}

// newPACluster starts three puaside processes with pa on one MariaDB
// (no external presence server) and a Kamailio registrar that mirrors
// every REGISTER to all three (WITH_FANOUT) and forwards SUBSCRIBE and
// PUBLISH to pa (WITH_PA): to the first instance's, or as the defines that
// more returns say.
func newPACluster(t *testing.T, more func(nodes []*clusterNode) map[string]string) *clusterRig {
	t.Helper()
	bin := puasideBinary(t)
	dbURL := dbtest.URL(t, store.MySQL)
	var nodes []*clusterNode
	for i := range 3 {
		cfg := baseConfig(t, nil) // no server_address: pa runs
		cfg.DBURL = dbURL
		cfg.Features.BLA = false
		cfg.Usrloc.FlushInterval = 500 * time.Millisecond
		cfg.Usrloc.MinExpires = time.Second
		cfg.Dialoginfo.FlushInterval = 500 * time.Millisecond
		cfg.Cluster = shard.Config{Enabled: true, InstanceID: fmt.Sprintf("p%d", i+1), TTL: clusterTTL, Shards: clusterShards}
		n := &clusterNode{id: cfg.Cluster.InstanceID, cfg: cfg}
		n.path = writeDaemonConfig(t, cfg)
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		n.proc = startDaemonProc(t, n.id, bin, n.path, n.cfg.HTTP.HTTPListen)
	}
	a := nodes[0]
	defs := map[string]string{"WITH_FANOUT": "", "WITH_PA": "",
		"PUASIDE_PA_URI":   kamailiotest.Str("sip:" + hostPort(a.cfg.PA.Listen[0])),
		"PUASIDE_SIP_PORT": strings.TrimPrefix(hostPort(a.cfg.PUA.Listen[0]), "127.0.0.1:")}
	for i, n := range nodes {
		sfx := map[int]string{0: "", 1: "2", 2: "3"}[i]
		defs["PUASIDE_REPLICATE_URI"+sfx] = kamailiotest.Str("sip:" + hostPort(n.cfg.Ingest.ReplicateListen[0]))
		defs["PUASIDE_TRACE_URI"+sfx] = kamailiotest.Str("sip:" + hostPort(n.cfg.Ingest.TraceListen[0]))
	}
	for k, v := range more(nodes) {
		defs[k] = v
	}
	reg := kamailiotest.Start(t, kamailiotest.Options{Config: kamailiotest.ConfigPath(t, "registrar.cfg"),
		DB: kamailiotest.NoDB, Defines: defs})
	r := &clusterRig{bin: bin, nodes: nodes, reg: reg}
	r.balanced(t, a)
	return r
}

// TestClusterPATakeOver is the variant with the embedded presence server:
// three puaside processes on one MariaDB database, each with pa on, behind
// a real Kamailio registrar that mirrors every REGISTER to all three
// (WITH_FANOUT) and forwards the phones' SUBSCRIBEs, record-routed, to
// instance A's pa (WITH_PA). A watcher subscribes there to a presentity of
// A's shard and to one of another instance's shard: each is notified by
// the owner of its shard only, once per change. A is SIGKILLed and the
// presentity of its shard unregisters: the watcher gets closed from the
// successor within lease_ttl + 1 s, in the same dialog (same tag, higher
// CSeq); its refresh through the proxy reaches the successor; no NOTIFY is
// sent twice.
func TestClusterPATakeOver(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := newPACluster(t, func([]*clusterNode) map[string]string { return nil })
	reg, a := r.reg, r.nodes[0]

	// One user of A's shard, one of another instance's.
	leases := clusterLeases(t, a)
	ownerOf := func(user string) string {
		s := shard.Of("sip:"+user+"@example.com", clusterShards)
		for _, l := range leases {
			if l.Shard == s {
				return l.Owner
			}
		}
		return ""
	}
	var mine, other string
	for i := 0; mine == "" || other == ""; i++ {
		u := fmt.Sprintf("u%d", i)
		switch o := ownerOf(u); {
		case o == a.id && mine == "":
			mine = u
		case o != a.id && o != "" && other == "":
			other = u
		}
	}
	t.Logf("%s is in A's shard, %s in %s's", mine, other, ownerOf(other))
	phMine := sipphone.NewPhone(t, mine, "example.com")
	phOther := sipphone.NewPhone(t, other, "example.com")
	watcher := sipphone.NewPhone(t, "watcher", "example.com")
	watch := func(ph *sipphone.Phone) *sipphone.Watcher {
		t.Helper()
		w, err := watcher.Watch(ctx, reg.Addr(), ph.AoR(), "presence", sipphone.WatchOptions{Expires: 600})
		if err != nil {
			t.Fatalf("watch %s through the proxy: %v", ph.User, err)
		}
		waitNotify(ctx, t, w, waitLimit, ph.User+" closed", pidfClosed)
		return w
	}
	wMine, wOther := watch(phMine), watch(phOther)
	for _, ph := range []*sipphone.Phone{phMine, phOther} {
		if res, err := ph.Register(ctx, reg.Addr(), 600); err != nil || res.StatusCode != 200 {
			t.Fatalf("register %s: %v %v", ph.User, res, err)
		}
	}
	waitNotify(ctx, t, wMine, waitLimit, mine+" open", pidfOpen(phMine))
	waitNotify(ctx, t, wOther, waitLimit, other+" open", pidfOpen(phOther))
	// Let the owners' digests of what they notified reach the database (a
	// kill within the milliseconds of a group commit loses one: the
	// successor then notifies that state once more).
	time.Sleep(time.Second)

	last := wMine.Notifications()[len(wMine.Notifications())-1]
	a.proc.kill()
	killedAt := time.Now()
	if res, err := phMine.Unregister(ctx, reg.Addr()); err != nil || res.StatusCode != 200 {
		t.Fatalf("unregister %s: %v %v", mine, res, err)
	}
	waitNotify(ctx, t, wMine, clusterTTL+time.Second+500*time.Millisecond, mine+" closed from the successor", pidfClosed)
	took := time.Since(killedAt)
	t.Logf("%s's lamp dark %s after SIGKILL of A", mine, took.Round(time.Millisecond))
	if took > clusterTTL+time.Second {
		t.Errorf("lamp right %s after the kill, want within lease_ttl + 1s (%s)", took, clusterTTL+time.Second)
	}
	got := wMine.Notifications()[len(wMine.Notifications())-1]
	if got.Tag != last.Tag || got.CSeq <= last.CSeq {
		t.Errorf("successor's NOTIFY tag %q CSeq %d; want the dialog's tag %q and a CSeq above %d", got.Tag, got.CSeq, last.Tag, last.CSeq)
	}
	if res, err := phOther.Unregister(ctx, reg.Addr()); err != nil || res.StatusCode != 200 {
		t.Fatalf("unregister %s: %v %v", other, res, err)
	}
	waitNotify(ctx, t, wOther, waitLimit, other+" closed", pidfClosed)
	// The refresh follows the successor's Contact through the proxy.
	for _, w := range []*sipphone.Watcher{wMine, wOther} {
		if res, err := w.Refresh(ctx, 600); err != nil || res.StatusCode != 200 {
			t.Fatalf("refresh through the proxy after A died: %v %v", res, err)
		}
		waitNotify(ctx, t, w, waitLimit, "the NOTIFY after the refresh", pidfClosed)
	}
	for _, w := range []*sipphone.Watcher{wMine, wOther} {
		var states []string
		for _, n := range w.Notifications() {
			if pidfClosed(n.Body) {
				states = append(states, "closed")
			} else {
				states = append(states, "open")
			}
		}
		if got, want := strings.Join(states, " "), "closed open closed closed"; got != want {
			t.Errorf("NOTIFYs %q, want %q (one per change and refresh, none twice):\n%s", got, want, notifyBodies(w))
		}
	}
}
