package mgmt_test

import (
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/puaside/puaside/mgmt"
)

// TestOpenAPIMatchesRoutes keeps openapi.yaml true: every registered route
// is described and every described operation is registered.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	srv := start(t, mgmt.DefaultConfig(), mgmt.Deps{}, nil)
	a := do(t, "GET", "http://"+srv.Addr()+"/v1/openapi.yaml", "", nil)
	if a.code != 200 {
		t.Fatalf("GET /v1/openapi.yaml: %d", a.code)
	}
	var doc struct {
		OpenAPI string                               `yaml:"openapi"`
		Paths   map[string]map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal([]byte(a.raw), &doc); err != nil {
		t.Fatalf("parse openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi version %q", doc.OpenAPI)
	}
	described := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			switch method {
			case "get", "put", "post", "delete", "patch", "head", "options":
			default:
				continue
			}
			described[strings.ToUpper(method)+" "+path] = true
			if _, ok := op["responses"]; !ok {
				t.Errorf("%s %s: no responses", method, path)
			}
		}
	}
	registered := map[string]bool{}
	for _, r := range srv.Routes() {
		registered[r] = true
		if !described[r] {
			t.Errorf("route %s is not in openapi.yaml", r)
		}
	}
	var extra []string
	for d := range described {
		if !registered[d] {
			extra = append(extra, d)
		}
	}
	sort.Strings(extra)
	for _, d := range extra {
		t.Errorf("openapi.yaml describes %s, which is not registered", d)
	}
	if len(registered) < 20 {
		t.Errorf("only %d routes registered", len(registered))
	}
}

// specResponses reads the status codes openapi.yaml declares per
// operation ("METHOD /path" → codes).
func specResponses(t *testing.T, raw string) map[string]map[string]bool {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]any `yaml:"responses"`
		} `yaml:"paths"`
	}
	if err := yaml.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatalf("parse openapi.yaml: %v", err)
	}
	out := map[string]map[string]bool{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			codes := map[string]bool{}
			for c := range op.Responses {
				codes[c] = true
			}
			out[strings.ToUpper(method)+" "+path] = codes
		}
	}
	return out
}

// TestOpenAPIStatusCodes: the answers of the API, good and bad, carry the
// status codes openapi.yaml declares for their operation.
func TestOpenAPIStatusCodes(t *testing.T) {
	f := newFixture(t, nil)
	spec := specResponses(t, do(t, "GET", f.base+"/v1/openapi.yaml", "", nil).raw)
	tok := newFixture(t, func(c *mgmt.Config) { c.Token = "s3cret" })
	untrusted := newFixture(t, func(c *mgmt.Config) { c.TrustedSources = []string{"192.0.2.0/24"} })
	pub := `{"presentity_uri":"sip:a@example.com","event":"presence","body":"<p/>"}`
	sub := `{"presentity_uri":"sip:a@example.com","watcher_uri":"sip:w@example.com","event":"presence"}`
	rpc := `{"jsonrpc":"2.0","id":1,"method":"pua.publish","params":["sip:a@example.com",60,"presence",".",".",".",".",".","<p/>"]}`
	for _, c := range []struct {
		f                     *fixture
		op, method, url, body string
		want                  int
	}{
		{f, "GET /healthz", "GET", "/healthz", "", 200},
		{f, "GET /readyz", "GET", "/readyz", "", 200},
		{f, "GET /metrics", "GET", "/metrics", "", 200},
		{f, "POST /v1/publish", "POST", "/v1/publish", pub, 200},
		{f, "POST /v1/publish", "POST", "/v1/publish", `{"event":"presence"}`, 400},
		{f, "POST /v1/publish", "POST", "/v1/publish", `{"presentity_uri":"sip:a@example.com","event":"presence","body":"<p/>","extra_headers":["Call-ID: x"]}`, 400},
		{f, "POST /v1/publish", "POST", "/v1/publish", `{"presentity_uri":"sip:a@example.com","event":"presence","etag":"nope"}`, 412},
		{f, "POST /v1/subscribe", "POST", "/v1/subscribe", sub, 200},
		{f, "POST /v1/subscribe", "POST", "/v1/subscribe", `{}`, 400},
		{f, "POST /RPC", "POST", "/RPC", rpc, 200},
		{f, "GET /v1/publications", "GET", "/v1/publications", "", 200},
		{f, "GET /v1/publications", "GET", "/v1/publications?limit=x", "", 400},
		{f, "DELETE /v1/publications", "DELETE", "/v1/publications?presentity_uri=sip:a@example.com", "", 400},
		{f, "GET /v1/subscriptions", "GET", "/v1/subscriptions", "", 200},
		{f, "DELETE /v1/subscriptions", "DELETE", "/v1/subscriptions?presentity_uri=sip:n@example.com&watcher_uri=sip:w@example.com&event=presence", "", 404},
		{f, "GET /v1/registrations", "GET", "/v1/registrations", "", 200},
		{f, "GET /v1/registrations/{aor}", "GET", "/v1/registrations/sip:alice@example.com", "", 200},
		{f, "GET /v1/registrations/{aor}", "GET", "/v1/registrations/sip:nobody@example.com", "", 404},
		{f, "GET /v1/registrations/{aor}", "GET", "/v1/registrations/tel:+15550100", "", 400},
		{f, "GET /v1/registrations/{aor}", "GET", "/v1/registrations/sip:@example.com", "", 400},
		{f, "GET /v1/flags", "GET", "/v1/flags", "", 200},
		{f, "PUT /v1/flags/{aor}", "PUT", "/v1/flags/sip:bob@example.com", `{"enabled":false}`, 200},
		{f, "PUT /v1/flags/{aor}", "PUT", "/v1/flags/sip:bob@example.com", `{"enabled":"no"}`, 400},
		{f, "DELETE /v1/flags/{aor}", "DELETE", "/v1/flags/sip:bob@example.com", "", 200},
		{f, "DELETE /v1/flags/{aor}", "DELETE", "/v1/flags/sip:carol@example.com", "", 404},
		{f, "GET /v1/dialogs", "GET", "/v1/dialogs", "", 200},
		{f, "GET /v1/lines", "GET", "/v1/lines", "", 200},
		{f, "PUT /v1/lines/{aor}", "PUT", "/v1/lines/sip:line@example.com", `{"members":["sip:p1@example.com"]}`, 200},
		{f, "PUT /v1/lines/{aor}", "PUT", "/v1/lines/sip:line@example.com", `{"members":["p1"]}`, 400},
		{f, "DELETE /v1/lines/{aor}", "DELETE", "/v1/lines/sip:line@example.com", "", 200},
		{f, "DELETE /v1/lines/{aor}", "DELETE", "/v1/lines/sip:nope@example.com", "", 404},
		{f, "POST /v1/events", "POST", "/v1/events", `{}`, 202},
		{tok, "GET /v1/publications", "GET", "/v1/publications", "", 401},
		{tok, "POST /v1/publish", "POST", "/v1/publish", pub, 401},
		{tok, "GET /metrics", "GET", "/metrics", "", 401},
		{untrusted, "POST /v1/publish", "POST", "/v1/publish", pub, 403},
		{untrusted, "POST /v1/subscribe", "POST", "/v1/subscribe", sub, 403},
		{untrusted, "POST /RPC", "POST", "/RPC", rpc, 403},
		{untrusted, "PUT /v1/flags/{aor}", "PUT", "/v1/flags/sip:bob@example.com", "", 403},
		{untrusted, "DELETE /v1/lines/{aor}", "DELETE", "/v1/lines/sip:line@example.com", "", 403},
	} {
		codes, ok := spec[c.op]
		if !ok {
			t.Errorf("%s is not in openapi.yaml", c.op)
			continue
		}
		a := do(t, c.method, c.f.base+c.url, c.body, nil)
		if a.code != c.want {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.url, a.code, a.raw, c.want)
		}
		if !codes[strconv.Itoa(a.code)] {
			t.Errorf("%s %s answered %d, which openapi.yaml does not declare for %s", c.method, c.url, a.code, c.op)
		}
	}
}
