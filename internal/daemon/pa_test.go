package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/internal/freeport"
	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/pua"
)

// TestPAInProcess: with no server_address (the default mode) the presence
// server runs; the management API publishes into it in process, its
// watchers are told at once, the listings show both sides, and deleting
// the presentity tells them it is gone.
func TestPAInProcess(t *testing.T) {
	cfg := testConfig(t)
	cfg.PUA.ServerAddress = ""
	// One port checked free for UDP and TCP (pa binds TCP on the port the
	// kernel gave UDP, which another process may hold).
	port, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	cfg.PA.Listen = []string{fmt.Sprintf("udp:127.0.0.1:%d", port), fmt.Sprintf("tcp:127.0.0.1:%d", port)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	if d.PA() == nil || len(d.Addrs()["pa"]) != 2 {
		t.Fatalf("presence server not running: %v", d.Addrs())
	}
	base := "http://" + d.Addrs()["http"][0]
	watcher := sipphone.NewPhone(t, "bob", "example.com")
	w, err := watcher.Watch(ctx, strings.TrimPrefix(d.Addrs()["pa"][0], "udp:"),
		sip.Uri{Scheme: "sip", User: "alice", Host: "example.com"}, "presence", sipphone.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WaitFor(ctx, func(b string) bool { return strings.Contains(b, "closed") }); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"presentity_uri": "sip:alice@example.com", "event": "presence", "id": "api",
		"body": `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com"><tuple id="api1"><status><basic>open</basic></status></tuple></presence>`})
	if code, out := call(t, "POST", base+"/v1/publish", string(body)); code != 200 || !strings.Contains(out, `"status":200`) {
		t.Fatalf("publish: %d %s", code, out)
	}
	if _, err := w.WaitFor(ctx, func(b string) bool { return strings.Contains(b, `id="api1"`) }); err != nil {
		t.Fatal(err)
	}
	if code, out := call(t, "GET", base+"/v1/presentities", ""); code != 200 || !strings.Contains(out, `"id":"api"`) {
		t.Fatalf("presentities: %d %s", code, out)
	}
	if code, out := call(t, "GET", base+"/v1/publications", ""); code != 200 || !strings.Contains(out, "sip:alice@example.com") {
		t.Fatalf("publications: %d %s", code, out)
	}
	if code, out := call(t, "GET", base+"/v1/watchers", ""); code != 200 || !strings.Contains(out, `"watcher":"sip:bob@example.com"`) {
		t.Fatalf("watchers: %d %s", code, out)
	}
	if code, out := call(t, "DELETE", base+"/v1/presentities/"+url.PathEscape("sip:alice@example.com"), ""); code != 200 {
		t.Fatalf("delete: %d %s", code, out)
	}
	if _, err := w.WaitFor(ctx, func(b string) bool { return strings.Contains(b, "pa-offline") }); err != nil {
		t.Fatal(err)
	}
	// A bad body is refused as an invalid request.
	bad, _ := json.Marshal(map[string]any{"presentity_uri": "sip:alice@example.com", "event": "presence", "body": "<nope"})
	if code, out := call(t, "POST", base+"/v1/publish", string(bad)); code != 400 {
		t.Fatalf("bad body: %d %s", code, out)
	}
}

// TestPAWithUpstream: pa.mode on with server_address set: a tracker's
// publication goes both to the engine (upstream) and into pa, whose
// watchers are told.
func TestPAWithUpstream(t *testing.T) {
	cfg := testConfig(t)
	cfg.PA.Mode = "on"
	cfg.PA.Listen = []string{"udp:127.0.0.1:0"}
	cfg.PUA.RequestTimeout = time.Second // nothing answers upstream
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = d.Stop(sctx)
	})
	watcher := sipphone.NewPhone(t, "bob", "example.com")
	w, err := watcher.Watch(ctx, strings.TrimPrefix(d.Addrs()["pa"][0], "udp:"),
		sip.Uri{Scheme: "sip", User: "alice", Host: "example.com"}, "presence", sipphone.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key := pua.Key{PresURI: "sip:alice@example.com", Event: "presence", ID: "usrloc"}
	body := `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com"><tuple id="up1"><status><basic>open</basic></status></tuple></presence>`
	if err := d.pub.Publish(pua.PublishRequest{Key: key, Body: []byte(body), Flag: pua.FlagUsrloc}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WaitFor(ctx, func(b string) bool { return strings.Contains(b, `id="up1"`) }); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range d.Engine().Publications() {
		found = found || p.Key == key
	}
	if !found {
		t.Fatal("the engine does not hold the publication: nothing goes upstream")
	}
	// Without pa.mode on, server_address set means no presence server.
	cfg2 := testConfig(t)
	d2, err := New(ctx, cfg2, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Stop(context.Background())
	if d2.PA() != nil {
		t.Fatal("pa runs with server_address set in mode auto")
	}
}

// slowListener takes d to hand a shard over.
type slowListener struct{ d time.Duration }

func (slowListener) ShardsGained(context.Context, map[int]int64) {}
func (l slowListener) ShardLost(context.Context, int)            { time.Sleep(l.d) }

// A shard lost is handed over by the pua engine and the presence server
// at once: the lease loop waits for the slower, not for both in turn.
func TestShardLostListenersAtOnce(t *testing.T) {
	ls := shardListeners{slowListener{300 * time.Millisecond}, slowListener{300 * time.Millisecond}}
	start := time.Now()
	ls.ShardLost(context.Background(), 0)
	if d := time.Since(start); d >= 550*time.Millisecond {
		t.Fatalf("ShardLost took %s, want the slower listener's 300ms", d)
	}
}
