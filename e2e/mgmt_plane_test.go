package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestManagementPlaneAgainstKamailio drives the management plane of a
// daemon publishing to a real Kamailio presence server: extra headers that
// would rewrite the PUBLISH (Call-ID, Via, From in full and compact forms,
// through the API and JSON-RPC) are refused and never reach Kamailio,
// while an ordinary extra header does; the refusals are counted on a
// metrics-only listener, which exposes no control endpoint; and a daemon
// whose http.trusted_sources leave out the caller publishes nothing.
func TestManagementPlaneAgainstKamailio(t *testing.T) {
	presence := presenceServer(t)
	cfg := baseConfig(t, presence)
	cfg.HTTP.Token = apiToken
	cfg.HTTP.MetricsListen = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ps := startPuaside(t, cfg)
	api := newAPICaller(t, ps, apiToken)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rows := func(user string) int {
		t.Helper()
		n, err := presence.Count(ctx, "presentity", "username = ? AND domain = ? AND event = ?", user, "example.com", "presence")
		if err != nil {
			t.Fatalf("count presentity: %v", err)
		}
		return n
	}

	for _, h := range []string{"Call-ID: hijack@evil", "i: hijack@evil", "v: SIP/2.0/UDP 192.0.2.66:5060;branch=z9hG4bKevil", "From: <sip:bob@example.com>;tag=x"} {
		code, _, b := api.call("POST", "/v1/publish", map[string]any{"presentity_uri": "sip:mallory@example.com", "event": "presence",
			"body": apiPIDF("mallory"), "extra_headers": []string{h}})
		if code != 400 || !strings.Contains(string(b), "extra_headers") {
			t.Errorf("publish with %q: HTTP %d %s, want 400 naming extra_headers", h, code, b)
		}
	}
	r := api.rpc("pua.publish", []any{"sip:mallory@example.com", 600, "presence", ".", ".", ".", ".", "CSeq: 1 PUBLISH\r\nX-Ok: 1", apiPIDF("mallory")})
	if r.Error == nil || r.Error.Code != -32602 || !strings.Contains(r.Error.Message, "CSeq") {
		t.Errorf("pua.publish with CSeq: %+v, want -32602 naming CSeq", r.Error)
	}

	// An ordinary extra header goes through; once carol is at Kamailio,
	// anything sent before her would be there too.
	api.callJSON("POST", "/v1/publish", map[string]any{"presentity_uri": "sip:carol@example.com", "event": "presence",
		"body": apiPIDF("carol"), "extra_headers": []string{"Sender: sip:carol@127.0.0.1:5999"}}, 200, nil)
	eventually(t, "carol's presentity at Kamailio", func() bool { return rows("carol") == 1 })
	if n := rows("mallory"); n != 0 {
		t.Errorf("%d presentity rows for mallory: a refused PUBLISH reached Kamailio", n)
	}

	metricsAPI := &apiCaller{t: t, base: "http://" + ps.d.Addrs()["metrics"][0], hc: api.hc}
	mfs := metricsAPI.scrape() // no token on metrics_listen
	if got := apiCounter(mfs, "puaside_http_refused_total", map[string]string{"reason": "reserved_header"}); got != 5 {
		t.Errorf("puaside_http_refused_total{reason=reserved_header} = %v, want 5", got)
	}
	if apiCounter(mfs, "puaside_ingest_dropped_total", map[string]string{"reason": "untrusted"}) != 0 || mfs["puaside_ingest_dropped_total"] == nil {
		t.Errorf("puaside_ingest_dropped_total not exported at zero")
	}
	if code, _, b := metricsAPI.call("POST", "/v1/publish", map[string]any{"presentity_uri": "sip:mallory@example.com", "event": "presence", "body": apiPIDF("mallory")}); code != 404 {
		t.Errorf("POST /v1/publish on metrics_listen: HTTP %d %s, want 404", code, b)
	}

	// A second daemon trusting only another network refuses every control
	// request from loopback, whatever the token.
	cfg2 := baseConfig(t, presence)
	cfg2.HTTP.Token = apiToken
	cfg2.HTTP.TrustedSources = []string{"192.0.2.0/24"}
	ps2 := startPuaside(t, cfg2)
	api2 := newAPICaller(t, ps2, apiToken)
	if code, _, b := api2.call("POST", "/v1/publish", map[string]any{"presentity_uri": "sip:dave@example.com", "event": "presence", "body": apiPIDF("dave")}); code != 403 {
		t.Errorf("publish from an untrusted source: HTTP %d %s, want 403", code, b)
	}
	if code, _, b := api2.call("POST", "/RPC", map[string]any{"jsonrpc": "2.0", "id": 1, "method": "pua.publish",
		"params": []any{"sip:dave@example.com", 600, "presence", ".", ".", ".", ".", ".", apiPIDF("dave")}}); code != 403 {
		t.Errorf("RPC from an untrusted source: HTTP %d %s, want 403", code, b)
	}
	if l := api2.publications(nil); l.Total != 0 {
		t.Errorf("listing on the untrusted daemon: %+v", l)
	}
	api.callJSON("POST", "/v1/publish", map[string]any{"presentity_uri": "sip:erin@example.com", "event": "presence", "body": apiPIDF("erin")}, 200, nil)
	eventually(t, "erin's presentity at Kamailio", func() bool { return rows("erin") == 1 })
	if n := rows("dave"); n != 0 {
		t.Errorf("%d presentity rows for dave: a refused request reached Kamailio", n)
	}
}
