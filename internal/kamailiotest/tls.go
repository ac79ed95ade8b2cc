package kamailiotest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TLSFiles are the PEM files of a Kamailio TLS listener.
type TLSFiles struct {
	// Cert and Key are the server certificate and its private key.
	Cert, Key string
	// CA is the CA list used to verify the peers' certificates; empty
	// means peers are not verified.
	CA string
}

// WriteTLSConfig writes the tls module's configuration file (the
// TLS_CONFIG define of deploy/kamailio/presence.cfg and registrar.cfg)
// for f into a temporary directory of t and returns its path. Clients are
// not asked for a certificate; the server's own connections (as a client)
// verify the peer against f.CA when it is set.
func WriteTLSConfig(t testing.TB, f TLSFiles) string {
	t.Helper()
	verify := "no"
	ca := ""
	if f.CA != "" {
		verify, ca = "yes", "ca_list = "+f.CA+"\n"
	}
	cfg := fmt.Sprintf(`[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
certificate = %s
private_key = %s

[client:default]
method = TLSv1.2+
verify_certificate = %s
require_certificate = %s
%s`, f.Cert, f.Key, verify, verify, ca)
	p := filepath.Join(t.TempDir(), "tls.cfg")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatalf("kamailiotest: write tls.cfg: %v", err)
	}
	return p
}
