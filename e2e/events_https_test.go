package e2e

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/internal/testpki"
)

// TestJSONEventsOverHTTPS: a proxy on another host sends its registration
// events as JSON over HTTPS with the API token (http.tls_cert, tls_key,
// token). An event with the token reaches the presence server (a watcher
// there sees the AoR open, then closed); one without it is refused 401,
// and plain HTTP to the TLS listener gets no answer.
func TestJSONEventsOverHTTPS(t *testing.T) {
	presence := presenceServer(t)
	cfg := baseConfig(t, presence)
	cfg.Features.Dialoginfo, cfg.Features.BLA = false, false
	cfg.Usrloc.ClosedLinger = time.Minute
	ca := testpki.NewCA(t, "events CA")
	cert, key := ca.Valid(t, "127.0.0.1")
	files := testpki.WriteFiles(t, t.TempDir(), map[string][]byte{"cert.pem": cert, "key.pem": key})
	cfg.HTTP.TLSCert, cfg.HTTP.TLSKey = files["cert.pem"], files["key.pem"]
	cfg.HTTP.Token = "events-secret"
	startPuaside(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	watcher := sipphone.NewPhone(t, "watcher", "example.com")
	s := &usrlocSetup{presence: presence, cfg: cfg, watcher: watcher}
	wa := s.watch(ctx, t, "carol")

	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	post := func(token, body string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+cfg.HTTP.HTTPListen+"/v1/events", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := hc.Do(req)
		if err != nil {
			t.Fatalf("post event over HTTPS: %v", err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	open := `{"type":"registration","aor":"sip:carol@example.com","contacts":[{"uri":"sip:carol@10.0.0.7:5060","expires":600}]}`
	if code := post("", open); code != http.StatusUnauthorized {
		t.Fatalf("event without the token: %d, want 401", code)
	}
	plain := &http.Client{Timeout: 3 * time.Second}
	if res, err := plain.Post("http://"+cfg.HTTP.HTTPListen+"/v1/events", "application/json", strings.NewReader(open)); err == nil {
		res.Body.Close()
		if res.StatusCode == http.StatusAccepted {
			t.Fatal("plain HTTP event accepted on the TLS listener")
		}
	}
	if code := post(cfg.HTTP.Token, open); code != http.StatusAccepted {
		t.Fatalf("event with the token: %d, want 202", code)
	}
	waitNotify(ctx, t, wa, waitLimit, "carol open from a JSON event over HTTPS", func(b string) bool {
		return strings.Contains(b, "<basic>open</basic>")
	})
	if code := post(cfg.HTTP.Token, `{"type":"registration","aor":"sip:carol@example.com","contacts":[{"uri":"sip:carol@10.0.0.7:5060","expires":0}]}`); code != http.StatusAccepted {
		t.Fatalf("closing event with the token: %d, want 202", code)
	}
	waitNotify(ctx, t, wa, waitLimit, "carol closed from a JSON event over HTTPS", pidfClosed)
}
