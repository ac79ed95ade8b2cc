package pa

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/internal/freeport"
	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/pidf"
	"github.com/puaside/puaside/pua"
)

// startServer runs a presence server on a free loopback port.
func startServer(t *testing.T, cfg Config, o Options) (*Server, string) {
	t.Helper()
	// One port checked free for UDP and TCP: with :0 the UDP port is the
	// kernel's pick and its TCP twin may belong to another process.
	port, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = []string{fmt.Sprintf("udp:127.0.0.1:%d", port), fmt.Sprintf("tcp:127.0.0.1:%d", port)}
	s, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	})
	return s, strings.TrimPrefix(s.Addrs()[0], "udp:")
}

func uri(s string) sip.Uri {
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		panic(err)
	}
	return u
}

func presenceBody(entity, id, basic string) []byte {
	return pidf.Build(pidf.Document{Entity: entity, Tuples: []pidf.Tuple{{ID: id, Basic: basic, Priority: -1}}})
}

func wait(t *testing.T, w *sipphone.Watcher, match func(sipphone.Notification) bool) sipphone.Notification {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := w.WaitNotify(ctx, match)
	if err != nil {
		t.Fatalf("%v; got %+v", err, w.Notifications())
	}
	return n
}

func has(s string) func(sipphone.Notification) bool {
	return func(n sipphone.Notification) bool { return strings.Contains(n.Body, s) }
}

func TestPresenceLifecycle(t *testing.T) {
	s, addr := startServer(t, DefaultConfig(), Options{})
	bob := sipphone.NewPhone(t, "bob", "example.com")
	ctx := context.Background()
	w, err := bob.Watch(ctx, addr, uri("sip:alice@example.com"), "presence", sipphone.WatchOptions{Expires: 600})
	if err != nil {
		t.Fatal(err)
	}
	if got := w.Response().StatusCode; got != 200 {
		t.Fatalf("SUBSCRIBE answered %d, want 200", got)
	}
	n := wait(t, w, has("<basic>closed</basic>"))
	if !strings.HasPrefix(n.State, "active;expires=") || n.ContentType != pidf.ContentType {
		t.Fatalf("first NOTIFY %+v", n)
	}
	key := pua.Key{PresURI: "sip:alice@example.com", Event: "presence", ID: "usrloc"}
	if err := s.Publish(pua.PublishRequest{Key: key, Body: presenceBody("sip:alice@example.com", "t1", "open")}); err != nil {
		t.Fatal(err)
	}
	wait(t, w, has(`<tuple id="t1">`))
	// A second publication is composed with the first.
	key2 := pua.Key{PresURI: "sip:alice@example.com", Event: "presence", ID: "phone"}
	if err := s.Publish(pua.PublishRequest{Key: key2, Body: presenceBody("sip:alice@example.com", "t2", "open")}); err != nil {
		t.Fatal(err)
	}
	wait(t, w, func(n sipphone.Notification) bool {
		return strings.Contains(n.Body, `id="t1"`) && strings.Contains(n.Body, `id="t2"`)
	})
	_ = s.Remove(key)
	_ = s.Remove(key2)
	wait(t, w, has("<basic>closed</basic>"))
	if err := w.Unsubscribe(ctx); err != nil {
		t.Fatal(err)
	}
	n = wait(t, w, func(n sipphone.Notification) bool { return n.Terminated() })
	if n.State != "terminated;reason=timeout" {
		t.Fatalf("final state %q", n.State)
	}
	// The dialog is gone: a refresh gets 481.
	res, err := w.Refresh(ctx, 600)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 481 {
		t.Fatalf("refresh after unsubscribe: %d, want 481", res.StatusCode)
	}
	if len(s.Watchers()) != 0 {
		t.Fatalf("watchers left: %+v", s.Watchers())
	}
}

func TestRefusals(t *testing.T) {
	_, addr := startServer(t, DefaultConfig(), Options{})
	bob := sipphone.NewPhone(t, "bob", "example.com")
	ctx := context.Background()
	_, err := bob.Watch(ctx, addr, uri("sip:alice@example.com"), "conference", sipphone.WatchOptions{})
	if err == nil || !strings.Contains(err.Error(), ": 489 ") {
		t.Fatalf("unknown event: %v, want 489", err)
	}
	_, err = bob.Watch(ctx, addr, uri("sip:alice@example.com"), "presence", sipphone.WatchOptions{Expires: 10})
	if err == nil || !strings.Contains(err.Error(), ": 423 ") {
		t.Fatalf("short expires: %v, want 423", err)
	}
	// Allow-Events and Min-Expires are given.
	req := sip.NewRequest(sip.SUBSCRIBE, uri("sip:alice@example.com"))
	req.AppendHeader(&sip.FromHeader{Address: bob.AoR(), Params: tagged("f1")})
	req.AppendHeader(&sip.ToHeader{Address: uri("sip:alice@example.com"), Params: sip.NewParams()})
	req.AppendHeader(&sip.ContactHeader{Address: bob.ContactURI("bob")})
	req.AppendHeader(sip.NewHeader("Event", "presence"))
	req.AppendHeader(sip.NewHeader("Expires", "5"))
	res, err := bob.Request(ctx, addr, req)
	if err != nil {
		t.Fatal(err)
	}
	if h := res.GetHeader("Min-Expires"); res.StatusCode != 423 || h == nil || h.Value() != "60" {
		t.Fatalf("423 reply: %d %v", res.StatusCode, h)
	}
	// An in-dialog SUBSCRIBE of an unknown dialog gets 481.
	req = sip.NewRequest(sip.SUBSCRIBE, uri("sip:alice@example.com"))
	req.AppendHeader(&sip.FromHeader{Address: bob.AoR(), Params: tagged("f2")})
	req.AppendHeader(&sip.ToHeader{Address: uri("sip:alice@example.com"), Params: tagged("nosuch")})
	req.AppendHeader(&sip.ContactHeader{Address: bob.ContactURI("bob")})
	req.AppendHeader(sip.NewHeader("Event", "presence"))
	res, err = bob.Request(ctx, addr, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 481 {
		t.Fatalf("unknown dialog: %d, want 481", res.StatusCode)
	}
	req = sip.NewRequest(sip.SUBSCRIBE, uri("sip:alice@example.com"))
	req.AppendHeader(&sip.FromHeader{Address: bob.AoR(), Params: tagged("f3")})
	req.AppendHeader(&sip.ToHeader{Address: uri("sip:alice@example.com"), Params: sip.NewParams()})
	req.AppendHeader(&sip.ContactHeader{Address: bob.ContactURI("bob")})
	req.AppendHeader(sip.NewHeader("Event", "foo"))
	res, err = bob.Request(ctx, addr, req)
	if err != nil {
		t.Fatal(err)
	}
	if h := res.GetHeader("Allow-Events"); res.StatusCode != 489 || h == nil || !strings.Contains(h.Value(), "dialog;sla") {
		t.Fatalf("489 reply: %d %v", res.StatusCode, h)
	}
}

func TestFetch(t *testing.T) {
	s, addr := startServer(t, DefaultConfig(), Options{})
	_ = s.Publish(pua.PublishRequest{Key: pua.Key{PresURI: "sip:alice@example.com", Event: "presence", ID: "u"},
		Body: presenceBody("sip:alice@example.com", "t1", "open")})
	bob := sipphone.NewPhone(t, "bob", "example.com")
	w, err := bob.Watch(context.Background(), addr, uri("sip:alice@example.com"), "presence", sipphone.WatchOptions{Expires: -1})
	if err == nil {
		n := wait(t, w, func(n sipphone.Notification) bool { return n.Terminated() })
		if !strings.Contains(n.Body, "<basic>open</basic>") {
			t.Fatalf("fetch NOTIFY %+v", n)
		}
	} else {
		t.Fatal(err)
	}
	if len(s.Watchers()) != 0 {
		t.Fatalf("a fetch left a subscription: %+v", s.Watchers())
	}
}

func tagged(tag string) sip.HeaderParams {
	p := sip.NewParams()
	p.Add("tag", tag)
	return p
}
