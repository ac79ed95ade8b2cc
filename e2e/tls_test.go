package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/kamailiotest"
	"github.com/puaside/puaside/internal/testpki"
	"github.com/puaside/puaside/pua"
)

// tlsPresenceServer starts the Kamailio presence server with a TLS
// listener presenting a certificate of ca for 127.0.0.1; it returns the
// instance and its sips: URI.
func tlsPresenceServer(t *testing.T, ca *testpki.CA) (*kamailiotest.Instance, string) {
	t.Helper()
	cert, key := ca.Valid(t, "127.0.0.1", "presence.test")
	f := testpki.WriteFiles(t, t.TempDir(), map[string][]byte{"cert.pem": cert, "key.pem": key})
	port := freePort(t)
	in := kamailiotest.Start(t, kamailiotest.Options{
		Config: kamailiotest.ConfigPath(t, "presence.cfg"),
		DB:     kamailiotest.SQLite,
		Defines: map[string]string{
			"WITH_TLS":   "",
			"TLS_PORT":   strconv.Itoa(port),
			"TLS_CONFIG": kamailiotest.Str(kamailiotest.WriteTLSConfig(t, kamailiotest.TLSFiles{Cert: f["cert.pem"], Key: f["key.pem"]})),
		},
	})
	return in, fmt.Sprintf("sips:127.0.0.1:%d", port)
}

// TestPublishToKamailioOverTLS: with server_address a sips: URI, the
// engine publishes to Kamailio's TLS listener, verifying its certificate
// against the CA the test made; with another CA it refuses the server and
// nothing is stored there.
func TestPublishToKamailioOverTLS(t *testing.T) {
	ca := testpki.NewCA(t, "e2e CA")
	presence, server := tlsPresenceServer(t, ca)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows := func(user string) int {
		n, err := presence.Count(ctx, "presentity", "username = ? AND domain = ? AND event = ?", user, "example.com", "presence")
		if err != nil {
			t.Fatalf("count presentity: %v", err)
		}
		return n
	}

	for _, c := range []struct {
		name, user string
		ca         *testpki.CA
		ok         bool
	}{
		{"trusted CA", "tlsalice", ca, true},
		{"unknown CA", "tlsbob", testpki.NewCA(t, "other CA"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := baseConfig(t, nil)
			cfg.PUA.ServerAddress = server
			cfg.PUA.TLS.CAFile = testpki.WriteFiles(t, t.TempDir(), map[string][]byte{"ca.pem": c.ca.PEM})["ca.pem"]
			cfg.PUA.RequestTimeout = 5 * time.Second
			ps := startPuaside(t, cfg)
			key := pua.Key{PresURI: "sip:" + c.user + "@example.com", Event: "presence", ID: "tls"}
			res, err := ps.d.Engine().PublishWait(ctx, pua.PublishRequest{Key: key, Body: []byte(alicePIDF), Flag: pua.FlagRPCPublish})
			if c.ok {
				if err != nil || res.Status != 200 || res.ETag == "" {
					t.Fatalf("publish over TLS: %+v, %v", res, err)
				}
				if n := rows(c.user); n != 1 {
					t.Fatalf("%d presentity rows, want 1", n)
				}
				return
			}
			msg := fmt.Sprint(err, res.Err)
			if res.Status != 0 || !strings.Contains(msg, "unknown authority") {
				t.Fatalf("publish to a server of an untrusted CA: %+v, %v; want a certificate error", res, err)
			}
			if n := rows(c.user); n != 0 {
				t.Fatalf("%d presentity rows after a refused handshake, want 0", n)
			}
		})
	}
}
