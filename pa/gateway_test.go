package pa

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/pua"
)

// fakeGateway serves the presentities of xmpp.example and records what pa
// tells it.
type fakeGateway struct {
	mu    sync.Mutex
	calls []string
}

func (g *fakeGateway) Serves(presURI string) (bool, error) {
	if !strings.HasSuffix(presURI, "@xmpp.example") {
		return false, nil
	}
	if strings.HasPrefix(presURI, "sip:nobody@") {
		return true, errors.New("no such user")
	}
	return true, nil
}

func (g *fakeGateway) WatcherAdded(_ context.Context, p, w string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, "added "+p+" "+w)
	return nil
}

func (g *fakeGateway) WatcherRemoved(_ context.Context, p, w string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, "removed "+p+" "+w)
	return nil
}

func (g *fakeGateway) got() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.calls...)
}

func waitCalls(t *testing.T, g *fakeGateway, want ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for strings.Join(g.got(), "\n") != strings.Join(want, "\n") {
		if time.Now().After(deadline) {
			t.Fatalf("gateway told %q, want %q", g.got(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A watcher of a gateway's presentity is pending (even from the local
// domain, the owner decides), the gateway is told once per subscription;
// the owner's approval makes it active and a second subscription of the
// same watcher inherits it; the gateway hears of the removal only when the
// watcher's last subscription ends. Other presentities are not the
// gateway's business.
func TestGatewayWatchers(t *testing.T) {
	gw := &fakeGateway{}
	s, addr := startServer(t, DefaultConfig(), Options{Gateway: gw})
	ctx := context.Background()
	dave := sipphone.NewPhone(t, "dave", "xmpp.example")
	w1, err := dave.Watch(ctx, addr, uri("sip:bob@xmpp.example"), "presence", sipphone.WatchOptions{Expires: 600})
	if err != nil {
		t.Fatal(err)
	}
	wait(t, w1, func(n sipphone.Notification) bool { return strings.HasPrefix(n.State, "pending") })
	waitCalls(t, gw, "added sip:bob@xmpp.example sip:dave@xmpp.example")

	// A SIP presentity: the local policy, no gateway.
	wl, err := dave.Watch(ctx, addr, uri("sip:carol@xmpp.other"), "presence", sipphone.WatchOptions{Expires: 600})
	if err != nil {
		t.Fatal(err)
	}
	wait(t, wl, func(n sipphone.Notification) bool { return strings.HasPrefix(n.State, "pending") })
	if err := wl.Unsubscribe(ctx); err != nil {
		t.Fatal(err)
	}
	wait(t, wl, func(n sipphone.Notification) bool { return n.Terminated() })

	if n := s.AuthorizeWatcher("sip:bob@xmpp.example", "sip:dave@xmpp.example", true); n != 1 {
		t.Fatalf("authorized %d subscriptions, want 1", n)
	}
	wait(t, w1, func(n sipphone.Notification) bool { return strings.HasPrefix(n.State, "active") })
	key := pua.Key{PresURI: "sip:bob@xmpp.example", Event: "presence", ID: "xmpp"}
	if err := s.Publish(pua.PublishRequest{Key: key, Body: presenceBody("sip:bob@xmpp.example", "r1", "open")}); err != nil {
		t.Fatal(err)
	}
	wait(t, w1, has("<basic>open</basic>"))

	w2, err := dave.Watch(ctx, addr, uri("sip:bob@xmpp.example"), "presence", sipphone.WatchOptions{Expires: 600})
	if err != nil {
		t.Fatal(err)
	}
	n := wait(t, w2, has("<basic>open</basic>"))
	if !strings.HasPrefix(n.State, "active") {
		t.Fatalf("second subscription of an approved watcher: %+v", n)
	}
	added := "added sip:bob@xmpp.example sip:dave@xmpp.example"
	waitCalls(t, gw, added, added)

	if err := w1.Unsubscribe(ctx); err != nil {
		t.Fatal(err)
	}
	wait(t, w1, func(n sipphone.Notification) bool { return n.Terminated() })
	time.Sleep(100 * time.Millisecond) // a removal told here would be wrong
	waitCalls(t, gw, added, added)
	if err := w2.Unsubscribe(ctx); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, gw, added, added, "removed sip:bob@xmpp.example sip:dave@xmpp.example")

	// A refusal by the owner is not told back.
	w3, err := dave.Watch(ctx, addr, uri("sip:bob@xmpp.example"), "presence", sipphone.WatchOptions{Expires: 600})
	if err != nil {
		t.Fatal(err)
	}
	wait(t, w3, func(n sipphone.Notification) bool { return strings.HasPrefix(n.State, "pending") })
	waitCalls(t, gw, added, added, "removed sip:bob@xmpp.example sip:dave@xmpp.example", added)
	s.AuthorizeWatcher("sip:bob@xmpp.example", "sip:dave@xmpp.example", false)
	n = wait(t, w3, func(n sipphone.Notification) bool { return n.Terminated() })
	if n.State != "terminated;reason=rejected" {
		t.Fatalf("refused: %q", n.State)
	}
	time.Sleep(100 * time.Millisecond)
	waitCalls(t, gw, added, added, "removed sip:bob@xmpp.example sip:dave@xmpp.example", added)
}

// An address in the gateway's domains that names none of its users is
// refused 404 (for every event package), counted, and neither kept nor
// told to the gateway; the gateway's other addresses are subscribed to.
func TestGatewayNobodyIs404(t *testing.T) {
	gw := &fakeGateway{}
	s, addr := startServer(t, DefaultConfig(), Options{Gateway: gw})
	ctx := context.Background()
	dave := sipphone.NewPhone(t, "dave", "example.com")
	for _, ev := range []string{"presence", "dialog"} {
		_, err := dave.Watch(ctx, addr, uri("sip:nobody@xmpp.example"), ev, sipphone.WatchOptions{Expires: 600})
		if err == nil || !strings.Contains(err.Error(), ": 404 ") {
			t.Fatalf("%s subscription to nobody at the gateway: %v, want a 404", ev, err)
		}
		if got := testutil.ToFloat64(s.met.subscribes.WithLabelValues(ev, "404")); got != 1 {
			t.Fatalf("%s 404s counted %v, want 1", ev, got)
		}
	}
	if got := testutil.ToFloat64(s.met.gwErrs); got != 2 {
		t.Fatalf("gateway errors counted %v, want 2", got)
	}
	if ws := s.Watchers(); len(ws) != 0 {
		t.Fatalf("refused subscriptions kept: %+v", ws)
	}
	if _, err := dave.Watch(ctx, addr, uri("sip:bob@xmpp.example"), "presence", sipphone.WatchOptions{Expires: 600}); err != nil {
		t.Fatalf("a user of the gateway: %v", err)
	}
	waitCalls(t, gw, "added sip:bob@xmpp.example sip:dave@example.com")
}
