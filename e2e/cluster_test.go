package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
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

// clusterShards reads GET /v1/shards from a node.
func clusterLeases(t *testing.T, n *clusterNode) []shardRow {
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
	bin := puasideBinary(t)
	dbURL := dbtest.URL(t, store.MySQL)
	presence := presenceServer(t)

	var nodes []*clusterNode
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
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		n.proc = startDaemonProc(t, n.id, bin, n.path, n.cfg.HTTP.HTTPListen)
	}
	defs := map[string]string{"WITH_FANOUT": ""}
	for i, n := range nodes {
		sfx := map[int]string{0: "", 1: "2", 2: "3"}[i]
		defs["PUASIDE_REPLICATE_URI"+sfx] = kamailiotest.Str("sip:" + hostPort(n.cfg.Ingest.ReplicateListen[0]))
		defs["PUASIDE_TRACE_URI"+sfx] = kamailiotest.Str("sip:" + hostPort(n.cfg.Ingest.TraceListen[0]))
	}
	reg := kamailiotest.Start(t, kamailiotest.Options{Config: kamailiotest.ConfigPath(t, "registrar.cfg"),
		DB: kamailiotest.NoDB, Defines: defs})

	// Every shard held, by exactly one instance, each in its fair share.
	var leases []shardRow
	eventually(t, "every shard held, each instance at most its fair share", func() bool {
		leases = clusterLeases(t, nodes[0])
		per := map[string]int{}
		for _, l := range leases {
			if l.Owner == "" {
				return false
			}
			per[l.Owner]++
		}
		return len(leases) == clusterShards && len(per) == 3 && per["p1"] <= 3 && per["p2"] <= 3 && per["p3"] <= 3
	})
	owner := func(aor string, from *clusterNode) (*clusterNode, int, int64) {
		s := shard.Of(aor, clusterShards)
		for _, l := range clusterLeases(t, from) {
			if l.Shard == s {
				for _, n := range nodes {
					if n.id == l.Owner {
						return n, s, l.Epoch
					}
				}
			}
		}
		t.Fatalf("no owner of %s's shard %d", aor, s)
		return nil, 0, 0
	}

	alice := sipphone.NewPhone(t, "alice", "example.com")
	bob := sipphone.NewPhone(t, "bob", "example.com")
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
	dlgOpts := sipphone.WatchOptions{Accept: "application/dialog-info+xml"}
	presAlice := watch(alice, "presence", sipphone.WatchOptions{})
	dlgBob := watch(bob, "dialog", dlgOpts)
	for _, ph := range []*sipphone.Phone{alice, bob} {
		res, err := ph.Register(ctx, reg.Addr(), 600)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("register %s: %v %v", ph.User, res, err)
		}
	}
	waitNotify(ctx, t, presAlice, waitLimit, "alice open", pidfOpen(alice))

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
