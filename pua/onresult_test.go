package pua

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/puatest"
)

// TestOnPublishResult: the OnPublishResult callback is told each PUBLISH
// transaction's outcome with its key and kind: a refusal with its code
// and reason, then the accepted retry, then the removal.
func TestOnPublishResult(t *testing.T) {
	fs := newFakeServer(t)
	fs.Push(puatest.Reply{Code: 403})
	type got struct {
		key    Key
		op     string
		status int
		reason string
	}
	var mu sync.Mutex
	var seen []got
	cfg := testConfig(fs)
	e := startTestEngine(t, cfg, Options{Clock: newFakeClock(), OnPublishResult: func(k Key, op string, r Result) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, got{k, op, r.Status, r.Reason})
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, _ := e.PublishWait(ctx, pubReq("a")); res.Status != 403 {
		t.Fatalf("first PUBLISH: %+v, want a 403", res)
	}
	mustWait(t, e, pubReq("b"))
	if _, err := e.RemoveWait(ctx, presKey); err != nil {
		t.Fatalf("remove: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []got{{presKey, "initial", 403, "Reply"}, {presKey, "initial", 200, "Reply"}, {presKey, "remove", 200, "Reply"}}
	if len(seen) != len(want) {
		t.Fatalf("results %+v, want %+v", seen, want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Errorf("result %d: %+v, want %+v", i, seen[i], want[i])
		}
	}
}
