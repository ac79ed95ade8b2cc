package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/dbtest"
	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/store"
)

// TestPASIGKILLKeepsSubscriptions: with the default mode (no
// server_address) puaside is the presence server, its state in SQLite or
// in MariaDB (strict mode). 1,000 watchers subscribe
// to ten users registering through a real Kamailio registrar that mirrors
// to puaside; puaside is killed with SIGKILL and started again; the next
// change (the users unregister) reaches every watcher in its old dialog,
// with a CSeq above the last one it saw, without any SUBSCRIBE.
func TestPASIGKILLKeepsSubscriptions(t *testing.T) {
	for _, backend := range []string{store.SQLite, store.MySQL} {
		t.Run(backend, func(t *testing.T) { paSIGKILL(t, backend) })
	}
}

func paSIGKILL(t *testing.T, backend string) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cfg := baseConfig(t, nil)
	cfg.DBURL = dbtest.URL(t, backend)
	cfg.Features.Dialoginfo, cfg.Features.BLA = false, false
	cfg.Usrloc.MinExpires = time.Second
	cfg.Usrloc.ClosedLinger = time.Minute
	bin := puasideBinary(t)
	cfgPath := writeDaemonConfig(t, cfg)
	proc := startDaemonProc(t, "puaside#1", bin, cfgPath, cfg.HTTP.HTTPListen)
	reg := registrar(t, "WITH_REPLICATE", cfg)
	paAddr := hostPort(cfg.PA.Listen[0])

	const users, perUser = 10, 100
	var phones []*sipphone.Phone
	for i := 0; i < users; i++ {
		phones = append(phones, sipphone.NewPhone(t, fmt.Sprintf("u%d", i), "example.com"))
	}
	// Ten watcher phones, each holding 100 dialogs.
	var watchers []*sipphone.Watcher
	var owner []int
	for j := 0; j < 10; j++ {
		wp := sipphone.NewPhone(t, fmt.Sprintf("w%d", j), "example.com")
		for k := 0; k < users*perUser/10; k++ {
			u := k % users
			w, err := wp.Watch(ctx, paAddr, phones[u].AoR(), "presence", sipphone.WatchOptions{Expires: 3600})
			if err != nil {
				t.Fatalf("watch %d/%d: %v", j, k, err)
			}
			watchers = append(watchers, w)
			owner = append(owner, u)
		}
	}
	if len(watchers) != users*perUser {
		t.Fatalf("%d watchers", len(watchers))
	}
	for _, w := range watchers {
		expectNotify(ctx, t, w, waitLimit, "initial closed", func(b string) bool { return strings.Contains(b, "<basic>closed</basic>") })
	}
	for _, p := range phones {
		if res, err := p.Register(ctx, reg.Addr(), 600); err != nil || res.StatusCode != 200 {
			t.Fatalf("REGISTER %s: %v %v", p.User, res, err)
		}
	}
	for _, w := range watchers {
		expectNotify(ctx, t, w, waitLimit, "open", func(b string) bool { return strings.Contains(b, "<basic>open</basic>") })
	}
	last := make([]uint32, len(watchers))
	seen := make([]int, len(watchers))
	for i, w := range watchers {
		ns := w.Notifications()
		last[i], seen[i] = ns[len(ns)-1].CSeq, len(ns)
	}
	// The dialogs' CSeq reservations are written within milliseconds.
	time.Sleep(500 * time.Millisecond)
	proc.kill()
	proc = startDaemonProc(t, "puaside#2", bin, cfgPath, cfg.HTTP.HTTPListen)
	defer proc.term()

	for _, p := range phones {
		if res, err := p.Unregister(ctx, reg.Addr()); err != nil || res.StatusCode != 200 {
			t.Fatalf("un-REGISTER %s: %v %v", p.User, res, err)
		}
	}
	bad := 0
	for i, w := range watchers {
		n, err := waitNotifyAfter(ctx, w, seen[i], func(n sipphone.Notification) bool {
			return strings.Contains(n.Body, "<basic>closed</basic>")
		})
		if err != nil {
			t.Errorf("watcher %d of %s: %v", i, phones[owner[i]].User, err)
			bad++
		} else if n.CSeq <= last[i] {
			t.Errorf("watcher %d: CSeq %d after %d before the restart", i, n.CSeq, last[i])
			bad++
		}
		if bad > 10 {
			t.Fatal("giving up")
		}
	}
}

// waitNotifyAfter waits for a NOTIFY, after the first skip ones, matching m.
func waitNotifyAfter(ctx context.Context, w *sipphone.Watcher, skip int, m func(sipphone.Notification) bool) (sipphone.Notification, error) {
	ctx, cancel := context.WithTimeout(ctx, waitLimit)
	defer cancel()
	for {
		ns := w.Notifications()
		for _, n := range ns[min(skip, len(ns)):] {
			if m(n) {
				return n, nil
			}
		}
		select {
		case <-ctx.Done():
			return sipphone.Notification{}, fmt.Errorf("no matching NOTIFY among %d after %d: %w", len(ns), skip, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
