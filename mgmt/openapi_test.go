package mgmt_test

import (
	"sort"
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
