package daemon

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/puaside/puaside/config"
)

// testConfig is a daemon on loopback ephemeral ports with an SQLite file in
// the test's directory, and no presence server answering.
func testConfig(t *testing.T) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.DBURL = "sqlite://" + filepath.Join(t.TempDir(), "puaside.db")
	cfg.PUA.Listen = []string{"udp:127.0.0.1:0"}
	cfg.PUA.ServerAddress = "sip:127.0.0.1:9"
	cfg.Ingest.ReplicateListen = []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0"}
	cfg.Ingest.TraceListen = []string{"udp:127.0.0.1:0"}
	cfg.Ingest.HEPListen = []string{"udp:127.0.0.1:0"}
	cfg.HTTP.HTTPListen = "127.0.0.1:0"
	return cfg
}

func startDaemon(t *testing.T, cfg config.Config) string {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
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
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := d.Stop(sctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return "http://" + d.Addrs()["http"][0]
}

func call(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestReadyWithJSONEventsOnly: with every SIP and HEP input switched off
// (JSON events only), /readyz answers ready; with inputs, once they are
// bound.
func TestReadyWithJSONEventsOnly(t *testing.T) {
	cfg := testConfig(t)
	cfg.Ingest.ReplicateListen, cfg.Ingest.TraceListen, cfg.Ingest.HEPListen = []string{}, []string{}, []string{}
	base := startDaemon(t, cfg)
	if code, body := call(t, "GET", base+"/readyz", ""); code != 200 {
		t.Errorf("JSON events only: /readyz %d %s", code, body)
	}
	base = startDaemon(t, testConfig(t))
	if code, body := call(t, "GET", base+"/readyz", ""); code != 200 {
		t.Errorf("every input bound: /readyz %d %s", code, body)
	}
}

// TestAPIStatusCodesWithRealTrackers: the trackers' refusals reach the
// API as the statuses openapi.yaml declares: an AoR without domain is 400,
// an unknown shared line 404, never 500.
func TestAPIStatusCodesWithRealTrackers(t *testing.T) {
	base := startDaemon(t, testConfig(t))
	_, raw := call(t, "GET", base+"/v1/openapi.yaml", "")
	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]any `yaml:"responses"`
		} `yaml:"paths"`
	}
	if err := yaml.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		method, path, pattern, body string
		want                        int
	}{
		{"PUT", "/v1/flags/bob", "/v1/flags/{aor}", `{"enabled":true}`, 400},
		{"DELETE", "/v1/flags/bob", "/v1/flags/{aor}", "", 400},
		{"PUT", "/v1/flags/sip:bob@example.com", "/v1/flags/{aor}", `{"enabled":false}`, 200},
		{"DELETE", "/v1/flags/sip:bob@example.com", "/v1/flags/{aor}", "", 200},
		{"DELETE", "/v1/lines/sip:nope@example.com", "/v1/lines/{aor}", "", 404},
		{"DELETE", "/v1/lines/nope", "/v1/lines/{aor}", "", 400},
		{"PUT", "/v1/lines/line7", "/v1/lines/{aor}", `{}`, 400},
		{"PUT", "/v1/lines/sip:line7@example.com", "/v1/lines/{aor}", `{"members":["sip:p1@example.com"]}`, 200},
		{"DELETE", "/v1/lines/sip:line7@example.com", "/v1/lines/{aor}", "", 200},
	} {
		code, body := call(t, c.method, base+c.path, c.body)
		if code != c.want {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, code, body, c.want)
		}
		if _, ok := doc.Paths[c.pattern][strings.ToLower(c.method)].Responses[strconv.Itoa(code)]; !ok {
			t.Errorf("%s %s answered %d, not declared in openapi.yaml", c.method, c.path, code)
		}
	}
}

// TestReadyForEveryInputCombination: /readyz answers ready once the
// configured inputs are bound, for every combination of the SIP and HEP
// inputs (none of them: JSON events only), over UDP and TCP.
func TestReadyForEveryInputCombination(t *testing.T) {
	for mask := 0; mask < 8; mask++ {
		cfg := testConfig(t)
		pick := func(bit int, l []string) []string {
			if mask&bit == 0 {
				return []string{}
			}
			return l
		}
		cfg.Ingest.ReplicateListen = pick(1, []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0"})
		cfg.Ingest.TraceListen = pick(2, []string{"tcp:127.0.0.1:0"})
		cfg.Ingest.HEPListen = pick(4, []string{"udp:127.0.0.1:0", "tcp:127.0.0.1:0"})
		base := startDaemon(t, cfg)
		if code, body := call(t, "GET", base+"/readyz", ""); code != 200 {
			t.Errorf("inputs replicate %v trace %v hep %v: /readyz %d %s",
				cfg.Ingest.ReplicateListen, cfg.Ingest.TraceListen, cfg.Ingest.HEPListen, code, body)
		}
	}
}
