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
	r := newPACluster(t, func(nodes []*clusterNode) map[string]string {
		var list strings.Builder
		for i, n := range nodes {
			// Priority order: the first instance first.
			fmt.Fprintf(&list, "1 sip:%s 0 %d\n", hostPort(n.cfg.PA.Listen[0]), 10-i)
		}
		path := filepath.Join(t.TempDir(), "pa.list")
		if err := os.WriteFile(path, []byte(list.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return map[string]string{"WITH_PA_SET": "", "PUASIDE_PA_LIST": kamailiotest.Str(path)}
	})
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
