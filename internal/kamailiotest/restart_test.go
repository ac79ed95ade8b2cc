package kamailiotest

import (
	"context"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/sipphone"
)

// A presence server started again keeps its port and its database: a
// presentity published before the stop is still there, and its ETag still
// refreshes it.
func TestStartAgainKeepsPortAndDatabase(t *testing.T) {
	in := Start(t, Options{Config: ConfigPath(t, "presence.cfg"), DB: SQLite})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice := uri("alice")
	publisher := sipphone.NewPhone(t, "puaside", domain)
	res := publish(ctx, t, publisher, in.Addr(), alice, pub{event: "presence", ctype: "application/pidf+xml", body: pidfOpen, expires: 600})
	etag := etagOf(t, res)
	waitCount(ctx, t, in, 1, "presentity", "username = ? AND event = ?", "alice", "presence")

	port := in.Port()
	in.Stop()
	if in.Running() {
		t.Fatal("still running after Stop")
	}
	in.StartAgain(t)
	if in.Port() != port || !in.Running() {
		t.Fatalf("port %d (was %d), running %v", in.Port(), port, in.Running())
	}
	waitCount(ctx, t, in, 1, "presentity", "username = ? AND event = ?", "alice", "presence")
	publish(ctx, t, publisher, in.Addr(), alice, pub{event: "presence", etag: etag, expires: 600})
}
