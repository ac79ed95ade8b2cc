package daemon

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/internal/sipphone"
)

// TestPAInProcess: with no server_address (the default mode) the presence
// server runs; the management API publishes into it in process, its
// watchers are told at once, the listings show both sides, and deleting
// the presentity tells them it is gone.
func TestPAInProcess(t *testing.T) {
	cfg := testConfig(t)
	cfg.PUA.ServerAddress = ""
	cfg.PA.Listen = []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0"}
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
