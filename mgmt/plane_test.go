package mgmt_test

import (
	"strings"
	"testing"

	"github.com/puaside/puaside/internal/puatest"
	"github.com/puaside/puaside/mgmt"
)

// refused returns puaside_http_refused_total for reason.
func refused(t *testing.T, f *fixture, reason string) float64 {
	t.Helper()
	return puatest.Metric(t, f.m, "puaside_http_refused_total", map[string]string{"reason": reason})
}

// TestReservedExtraHeaders: the API and JSON-RPC refuse extra headers the
// engine builds itself, in any case and compact form, with 400 / -32602
// naming extra_headers, and count them; nothing reaches the engine.
func TestReservedExtraHeaders(t *testing.T) {
	f := newFixture(t, nil)
	names := []string{"Via", "call-id", "i", "CSeq", "Content-Length", "l", "From", "f", "TO", "t", "Max-Forwards",
		"Contact", "m", "Route", "Record-Route", "Expires", "SIP-If-Match", "Event", "o", "Content-Type", "c", "e", "k"}
	for _, n := range names {
		a := do(t, "POST", f.base+"/v1/publish", `{"presentity_uri":"sip:a@example.com","event":"presence","body":"<p/>","extra_headers":["X-Ok: 1","`+n+`: injected"]}`, nil)
		if a.code != 400 || a.obj["field"] != "extra_headers" || !strings.Contains(a.raw, "set by puaside") {
			t.Errorf("extra header %q: %d %s", n, a.code, a.raw)
		}
		a = do(t, "POST", f.base+"/RPC", `{"jsonrpc":"2.0","id":1,"method":"pua.publish","params":["sip:a@example.com",60,"presence",".",".",".",".","`+n+`: injected\r\nX-Ok: 1","<p/>"]}`, nil)
		if a.code != 200 || !strings.Contains(a.raw, "-32602") || !strings.Contains(a.raw, "extra_headers") {
			t.Errorf("RPC extra header %q: %d %s", n, a.code, a.raw)
		}
	}
	if calls := f.eng.Calls(); len(calls) != 0 {
		t.Errorf("engine called for refused requests: %v", calls)
	}
	if got := refused(t, f, "reserved_header"); got != float64(2*len(names)) {
		t.Errorf("reserved_header refusals counted %v, want %d", got, 2*len(names))
	}
	a := do(t, "POST", f.base+"/v1/publish", `{"presentity_uri":"sip:a@example.com","event":"presence","body":"<p/>","extra_headers":["Sender: sip:p@10.0.0.2","Priority: urgent"]}`, nil)
	if a.code != 200 {
		t.Errorf("ordinary extra headers: %d %s", a.code, a.raw)
	}
}

// TestControlEndpointsNeedTrustedSource: with trusted_sources not holding
// the caller, every control endpoint answers 403 and is counted, while
// listings, metrics and health checks still answer.
func TestControlEndpointsNeedTrustedSource(t *testing.T) {
	f := newFixture(t, func(c *mgmt.Config) { c.TrustedSources = []string{"10.0.0.0/8", "2001:db8::/32"} })
	control := []struct{ method, path, body string }{
		{"POST", "/v1/publish", `{"presentity_uri":"sip:a@example.com","event":"presence","body":"<p/>"}`},
		{"POST", "/v1/subscribe", `{"presentity_uri":"sip:a@example.com","watcher_uri":"sip:w@example.com","event":"presence"}`},
		{"POST", "/RPC", `{"jsonrpc":"2.0","id":1,"method":"pua.publish","params":["sip:a@example.com",60,"presence",".",".",".",".",".","<p/>"]}`},
		{"DELETE", "/v1/publications?presentity_uri=sip:a@example.com&event=presence", ""},
		{"DELETE", "/v1/subscriptions?presentity_uri=sip:a@example.com&watcher_uri=sip:w@example.com&event=presence", ""},
		{"PUT", "/v1/flags/" + "sip:bob@example.com", `{"enabled":false}`},
		{"DELETE", "/v1/flags/sip:bob@example.com", ""},
		{"PUT", "/v1/lines/sip:line@example.com", `{"members":["sip:p1@example.com"]}`},
		{"DELETE", "/v1/lines/sip:line@example.com", ""},
	}
	for _, c := range control {
		a := do(t, c.method, f.base+c.path, c.body, nil)
		if a.code != 403 || !strings.Contains(a.raw, "trusted_sources") {
			t.Errorf("%s %s from an untrusted source: %d %s", c.method, c.path, a.code, a.raw)
		}
	}
	if calls := f.eng.Calls(); len(calls) != 0 {
		t.Errorf("engine called for refused requests: %v", calls)
	}
	if got := refused(t, f, "untrusted_source"); got != float64(len(control)) {
		t.Errorf("untrusted_source refusals counted %v, want %d", got, len(control))
	}
	// Every registered route that is not a GET (nor the JSON event input,
	// guarded by ingest) is a control endpoint, including future ones.
	for _, rt := range f.srv.Routes() {
		method, path, _ := strings.Cut(rt, " ")
		if method == "GET" || path == "/v1/events" {
			continue
		}
		a := do(t, method, f.base+strings.ReplaceAll(path, "{aor}", "sip:x@example.com"), "{}", nil)
		if a.code != 403 {
			t.Errorf("%s from an untrusted source: %d %s, want 403", rt, a.code, a.raw)
		}
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/v1/publications", "/v1/registrations", "/v1/lines", "/v1/openapi.yaml"} {
		if a := do(t, "GET", f.base+p, "", nil); a.code != 200 {
			t.Errorf("GET %s: %d %s", p, a.code, a.raw)
		}
	}

	// The default list is loopback: the same requests go through.
	g := newFixture(t, nil)
	for _, c := range control[:3] {
		if a := do(t, c.method, g.base+c.path, c.body, nil); a.code == 403 {
			t.Errorf("%s %s from loopback with the default trusted_sources: %d %s", c.method, c.path, a.code, a.raw)
		}
	}
}

// TestMetricsListener: metrics_listen serves /metrics and the health checks
// without the token, and no control endpoint or listing.
func TestMetricsListener(t *testing.T) {
	f := newFixture(t, func(c *mgmt.Config) { c.MetricsListen = "127.0.0.1:0"; c.Token = "s3cret" })
	maddr := f.srv.MetricsAddr()
	if maddr == "" || maddr == f.srv.Addr() {
		t.Fatalf("metrics listener %q (API on %q)", maddr, f.srv.Addr())
	}
	mbase := "http://" + maddr
	a := do(t, "GET", mbase+"/metrics", "", nil)
	if a.code != 200 || !strings.Contains(a.raw, "puaside_ingest_messages_total") {
		t.Fatalf("GET /metrics on metrics_listen: %d %.200s", a.code, a.raw)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if a := do(t, "GET", mbase+p, "", nil); a.code != 200 {
			t.Errorf("GET %s on metrics_listen: %d %s", p, a.code, a.raw)
		}
	}
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/publish", `{"presentity_uri":"sip:a@example.com","event":"presence","body":"<p/>"}`},
		{"POST", "/RPC", `{"jsonrpc":"2.0","id":1,"method":"pua.publish","params":["sip:a@example.com",60,"presence",".",".",".",".",".","<p/>"]}`},
		{"GET", "/v1/publications", ""},
		{"POST", "/v1/events", `{}`},
		{"PUT", "/v1/lines/sip:line@example.com", `{}`},
	} {
		hdr := map[string]string{"Authorization": "Bearer s3cret"}
		if a := do(t, c.method, mbase+c.path, c.body, hdr); a.code != 404 {
			t.Errorf("%s %s on metrics_listen: %d %s", c.method, c.path, a.code, a.raw)
		}
	}
	if calls := f.eng.Calls(); len(calls) != 0 {
		t.Errorf("engine called through metrics_listen: %v", calls)
	}
	// The API listener keeps its token, on /metrics too.
	if a := do(t, "GET", f.base+"/metrics", "", nil); a.code != 401 {
		t.Errorf("GET /metrics on http_listen without token: %d", a.code)
	}
	if got := refused(t, f, "unauthorised"); got != 1 {
		t.Errorf("unauthorised refusals counted %v, want 1", got)
	}
}
