package mgmt_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	pathpkg "path"
	"strings"
	"testing"

	"github.com/puaside/puaside/mgmt"
	"github.com/puaside/puaside/mgmt/mgmttest"
)

func fuzzServer(f *testing.F) *mgmt.Server {
	cfg := mgmt.DefaultConfig()
	cfg.MaxBody = 8192
	srv, err := mgmt.New(cfg, mgmt.Deps{Engine: mgmttest.NewEngine(), Lines: mgmttest.NewLines(), Registrations: mgmttest.NewRegistrations()}, mgmt.Options{})
	if err != nil {
		f.Fatal(err)
	}
	return srv
}

// FuzzPublishJSON feeds arbitrary bodies to the JSON API: every answer is a
// JSON object, and every refusal names an error.
func FuzzPublishJSON(f *testing.F) {
	for _, s := range []string{
		`{"presentity_uri":"sip:a@example.com","event":"presence","expires":60,"body":"<p/>"}`,
		`{"presentity_uri":"sip:a@example.com","event":"presence","expires":0}`,
		`{"presentity_uri":"sip:a@example.com","event":"dialog","etag":"x"}`,
		`{"presentity_uri":"sips:[::1]:5061","event":"reg","extra_headers":["A: b","c"],"body":"x"}`,
		`{"presentity_uri":1}`, `[]`, `null`, `{"members":["sip:x@y"]}`, `{"enabled":false}`, "",
	} {
		f.Add("/v1/publish", s)
		f.Add("/v1/subscribe", s)
	}
	f.Add("/v1/lines/sip:l@x", `{"members":["sip:x@y"]}`)
	f.Add("/v1/flags/sip:a@x", `{"enabled":true}`)
	srv := fuzzServer(f)
	f.Fuzz(func(t *testing.T, path, body string) {
		if !strings.HasPrefix(path, "/") || path != pathpkg.Clean(path) || strings.ContainsAny(path, "?#%") {
			return // the mux redirects such paths to their clean form
		}
		method := "POST"
		if strings.HasPrefix(path, "/v1/lines/") || strings.HasPrefix(path, "/v1/flags/") {
			method = "PUT"
		}
		req, err := http.NewRequest(method, "http://x"+path, strings.NewReader(body))
		if err != nil {
			return
		}
		req.RemoteAddr = "127.0.0.1:40000" // a trusted source: the control endpoints answer
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		var obj map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &obj); err != nil {
			t.Fatalf("%s %q: answer %d is not a JSON object: %q", path, body, rec.Code, rec.Body.String())
		}
		if rec.Code >= 400 {
			if s, _ := obj["error"].(string); s == "" {
				t.Fatalf("%s %q: %d without error: %q", path, body, rec.Code, rec.Body.String())
			}
		}
	})
}

// FuzzRPC feeds arbitrary JSON-RPC requests: the answer is a JSON-RPC
// response (or nothing for notifications), never a panic.
func FuzzRPC(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"pua.publish","params":["sip:a@example.com",3600,"presence",".",".",".",".",".","<p/>"]}`,
		`{"jsonrpc":"2.0","id":1,"method":"pua.subscribe","params":{"presentity_uri":"sip:a@x","watcher_uri":"sip:b@x","event":"presence","expires":"60"}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"x"},{"method":"pua.send_publish"}]`,
		`{"jsonrpc":"2.0","method":"pua.publish","params":null}`, `[]`, `{`, `"x"`, `{"id":null,"method":"pua.publish","params":[1e999]}`,
	} {
		f.Add(s)
	}
	srv := fuzzServer(f)
	f.Fuzz(func(t *testing.T, body string) {
		req, _ := http.NewRequest("POST", "http://x/RPC", strings.NewReader(body))
		req.RemoteAddr = "127.0.0.1:40000"
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusNoContent:
			return
		case http.StatusOK, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("%q: HTTP %d", body, rec.Code)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%q: answer not JSON: %q", body, rec.Body.String())
		}
	})
}
