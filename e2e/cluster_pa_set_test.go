package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/kamailiotest"
	"github.com/puaside/puaside/internal/sipphone"
)

// paSet returns the defines of newPACluster that send SUBSCRIBE and
// PUBLISH to the dispatcher set of the three presence servers, the first
// instance first (registrar.cfg -A WITH_PA_SET).
func paSet(t *testing.T) func(nodes []*clusterNode) map[string]string {
	return func(nodes []*clusterNode) map[string]string {
		var list strings.Builder
		for i, n := range nodes {
			fmt.Fprintf(&list, "1 sip:%s 0 %d\n", hostPort(n.cfg.PA.Listen[0]), 10-i)
		}
		path := filepath.Join(t.TempDir(), "pa.list")
		if err := os.WriteFile(path, []byte(list.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return map[string]string{"WITH_PA_SET": "", "PUASIDE_PA_LIST": kamailiotest.Str(path)}
	}
}

// TestClusterPASetFailover: three puaside instances with pa on one
// MariaDB, behind a Kamailio registrar whose SUBSCRIBEs and PUBLISHes go to
// the set of the three presence servers (registrar.cfg -A WITH_PA_SET, the
// dispatcher module probing each with OPTIONS). A watcher subscribes
// through the proxy (to the first instance). The first instance is killed
// (SIGKILL): a new watcher's SUBSCRIBE through the proxy reaches a live
// instance and sees the user's state, and the user's unregistration
// reaches both watchers within lease_ttl + 1 s of the kill plus the
// proxy's failover.
func TestClusterPASetFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := newPACluster(t, paSet(t))
	reg, a := r.reg, r.nodes[0]
	alice := sipphone.NewPhone(t, "alice", "example.com")
	watcher := sipphone.NewPhone(t, "watcher", "example.com")
	late := sipphone.NewPhone(t, "late", "example.com")
	if res, err := alice.Register(ctx, reg.Addr(), 600); err != nil || res.StatusCode != 200 {
		t.Fatalf("register alice: %v %v", res, err)
	}
	w1, err := watcher.Watch(ctx, reg.Addr(), alice.AoR(), "presence", sipphone.WatchOptions{Expires: 600})
	if err != nil {
		t.Fatalf("watch alice through the proxy: %v", err)
	}
	waitNotify(ctx, t, w1, waitLimit, "alice open", pidfOpen(alice))

	a.proc.kill()
	killedAt := time.Now()
	// The proxy fails over: the SUBSCRIBE reaches a live instance (after
	// one timeout of the dead one at the most, fr_timer 5 s).
	w2, err := late.Watch(ctx, reg.Addr(), alice.AoR(), "presence", sipphone.WatchOptions{Expires: 600})
	if err != nil {
		t.Fatalf("a new SUBSCRIBE through the proxy after the first instance died: %v", err)
	}
	t.Logf("new subscription accepted %s after the kill", time.Since(killedAt).Round(time.Millisecond))
	waitNotify(ctx, t, w2, clusterTTL+time.Second+waitLimit, "alice open for the new watcher", pidfOpen(alice))
	if res, err := alice.Unregister(ctx, reg.Addr()); err != nil || res.StatusCode != 200 {
		t.Fatalf("unregister alice: %v %v", res, err)
	}
	for _, w := range []*sipphone.Watcher{w1, w2} {
		waitNotify(ctx, t, w, clusterTTL+time.Second+waitLimit, "alice closed", pidfClosed)
	}
}

// TestClusterPACallOwnerKilled: the pa variant of the mid-call kill. Three
// instances with pa on one MariaDB, the registrar tracing calls to all
// three (WITH_FANOUT) and sending SUBSCRIBEs to the dispatcher set of the
// presence servers (WITH_PA_SET). A watcher of bob's dialog state
// subscribes through the proxy; alice calls bob; the owner of bob's shard
// is killed (SIGKILL) while the call is confirmed and bob hangs up at once:
// the watcher sees the call terminated within lease_ttl + 1 s, in the same
// dialog, from the successor.
func TestClusterPACallOwnerKilled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := newPACluster(t, paSet(t))
	reg := r.reg
	alice := sipphone.NewPhone(t, "alice", "example.com")
	bob := sipphone.NewPhone(t, "bob", "example.com")
	watcher := sipphone.NewPhone(t, "watcher", "example.com")
	for _, ph := range []*sipphone.Phone{alice, bob} {
		if res, err := ph.Register(ctx, reg.Addr(), 600); err != nil || res.StatusCode != 200 {
			t.Fatalf("register %s: %v %v", ph.User, res, err)
		}
	}
	w, err := watcher.Watch(ctx, reg.Addr(), bob.AoR(), "dialog", sipphone.WatchOptions{Expires: 600, Accept: "application/dialog-info+xml"})
	if err != nil {
		t.Fatalf("watch bob's dialogs through the proxy: %v", err)
	}
	bob.SetPolicy(sipphone.KeepRinging)
	call, err := alice.Invite(ctx, reg.Addr(), bob.AoR())
	if err != nil {
		t.Fatalf("invite: %v", err)
	}
	in := ringing(ctx, t, bob, call.CallID())
	in.Answer()
	if err := call.WaitAnswer(ctx); err != nil {
		t.Fatalf("answer: %v", err)
	}
	waitNotify(ctx, t, w, waitLimit, "bob confirmed", fcDialogIn(call.CallID(), "confirmed"))
	time.Sleep(time.Second) // the owner's rows and digests reach the database
	last := w.Notifications()[len(w.Notifications())-1]

	dead, sh, epoch := r.owner(t, "sip:bob@example.com", r.nodes[0])
	t.Logf("bob's shard %d (epoch %d) is held by %s: SIGKILL", sh, epoch, dead.id)
	dead.proc.kill()
	killedAt := time.Now()
	if err := in.Bye(ctx); err != nil {
		t.Fatalf("bob's BYE: %v", err)
	}
	waitNotify(ctx, t, w, clusterTTL+time.Second+waitLimit, "bob terminated after the takeover", fcDialogIn(call.CallID(), "terminated"))
	took := time.Since(killedAt)
	t.Logf("bob's lamp dark %s after SIGKILL of its owner", took.Round(time.Millisecond))
	if took > clusterTTL+time.Second {
		t.Errorf("lamp right %s after the kill, want within lease_ttl + 1s (%s)", took, clusterTTL+time.Second)
	}
	got := w.Notifications()[len(w.Notifications())-1]
	if got.Tag != last.Tag || got.CSeq <= last.CSeq {
		t.Errorf("NOTIFY after the takeover: tag %q CSeq %d; want the dialog's tag %q and a CSeq above %d", got.Tag, got.CSeq, last.Tag, last.CSeq)
	}
}
