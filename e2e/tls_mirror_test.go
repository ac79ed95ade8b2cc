package e2e

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/kamailiotest"
	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/internal/testpki"
)

// TestReplicateOverTLS: the registrar's t_replicate copies reach puaside
// over TLS (t_replicate("sip:host:port;transport=tls"), Kamailio
// verifying puaside's certificate against the test's CA), as they would
// from a proxy on another host; the phone's registration is published.
func TestReplicateOverTLS(t *testing.T) {
	ca := testpki.NewCA(t, "e2e CA")
	cert, key := ca.Valid(t, "127.0.0.1")
	f := testpki.WriteFiles(t, t.TempDir(), map[string][]byte{"cert.pem": cert, "key.pem": key, "ca.pem": ca.PEM})
	presence := presenceServer(t)
	cfg := baseConfig(t, presence)
	cfg.Features.Dialoginfo = false
	rp := freePort(t)
	cfg.Ingest.ReplicateListen = []string{fmt.Sprintf("tls:127.0.0.1:%d", rp)}
	cfg.Ingest.TLSCert, cfg.Ingest.TLSKey = f["cert.pem"], f["key.pem"]
	reg := kamailiotest.Start(t, kamailiotest.Options{
		Config: kamailiotest.ConfigPath(t, "registrar.cfg"),
		Defines: map[string]string{
			"WITH_REPLICATE":        "",
			"PUASIDE_REPLICATE_URI": kamailiotest.Str(fmt.Sprintf("sip:127.0.0.1:%d;transport=tls", rp)),
			"WITH_TLS":              "",
			"TLS_PORT":              strconv.Itoa(freePort(t)),
			"TLS_CONFIG": kamailiotest.Str(kamailiotest.WriteTLSConfig(t,
				kamailiotest.TLSFiles{Cert: f["cert.pem"], Key: f["key.pem"], CA: f["ca.pem"]})),
		},
	})
	startPuaside(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ph := sipphone.NewPhone(t, "tlscarol", "example.com")
	res, err := ph.Register(ctx, reg.Addr(), 300)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("register: %v, %v", res, err)
	}
	eventually(t, "the registration copied over TLS published", func() bool {
		n, err := presence.Count(ctx, "presentity", "username = ? AND event = ?", "tlscarol", "presence")
		return err == nil && n == 1
	})
}
