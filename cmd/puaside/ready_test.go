package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestReadyCommand: `puaside ready` exits 0 on a 200 /readyz and 1, naming
// the failed check, on a 503.
func TestReadyCommand(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		if status != http.StatusOK {
			_, _ = w.Write([]byte(`{"status":"not ready","check":"database","error":"db down"}`))
		}
	}))
	defer srv.Close()
	run := func() (int, string) {
		var out, errb strings.Builder
		env := cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
		code := runCLIEnv(env, "ready", []string{"--api", srv.URL})
		return code, out.String() + errb.String()
	}
	if code, out := run(); code != exitOK {
		t.Errorf("ready against 200: exit %d %s", code, out)
	}
	status = http.StatusServiceUnavailable
	if code, out := run(); code != exitRemote || !strings.Contains(out, "db down") {
		t.Errorf("ready against 503: exit %d %s", code, out)
	}
}
