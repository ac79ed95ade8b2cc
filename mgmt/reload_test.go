package mgmt_test

import (
	"crypto/tls"
	"net/http"
	"testing"
	"time"

	"github.com/puaside/puaside/mgmt"
	"github.com/puaside/puaside/mgmt/mgmttest"
)

// TestSetAccess replaces the token and the trusted sources of a running
// server; a bad list changes nothing.
func TestSetAccess(t *testing.T) {
	f := newFixture(t, nil)
	if a := do(t, "GET", f.base+"/v1/publications", "", nil); a.code != 200 {
		t.Fatalf("no token yet: %d", a.code)
	}
	if err := f.srv.SetAccess("n3w", []string{"127.0.0.0/8"}); err != nil {
		t.Fatal(err)
	}
	if a := do(t, "GET", f.base+"/v1/publications", "", nil); a.code != 401 {
		t.Fatalf("after the new token, none sent: %d, want 401", a.code)
	}
	bearer := map[string]string{"Authorization": "Bearer n3w"}
	if a := do(t, "GET", f.base+"/v1/publications", "", bearer); a.code != 200 {
		t.Fatalf("new token: %d", a.code)
	}
	if err := f.srv.SetAccess("n3w", []string{"10.0.0.0/8"}); err != nil {
		t.Fatal(err)
	}
	if a := do(t, "POST", f.base+"/RPC", `{"jsonrpc":"2.0","method":"x","id":1}`, bearer); a.code != 403 {
		t.Fatalf("control call from an untrusted source: %d, want 403", a.code)
	}
	if err := f.srv.SetAccess("other", []string{"nonsense"}); err == nil {
		t.Fatal("a bad list was accepted")
	}
	if a := do(t, "GET", f.base+"/v1/publications", "", bearer); a.code != 200 {
		t.Fatalf("a bad reload changed the token: %d", a.code)
	}
}

// TestTLSCertificateRenewed rewrites the certificate files of a running
// server: new connections get the new certificate.
func TestTLSCertificateRenewed(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := writeSelfSigned(t, dir)
	cfg := mgmt.DefaultConfig()
	cfg.TLSCert, cfg.TLSKey = certFile, keyFile
	srv := start(t, cfg, mgmt.Deps{Engine: mgmttest.NewEngine()}, nil)
	_, _, pool2 := writeSelfSigned(t, dir)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool2}, DisableKeepAlives: true}}
	var err error
	for i := 0; i < 40; i++ { // the files are looked at once a second
		var res *http.Response
		if res, err = client.Get("https://" + srv.Addr() + "/healthz"); err == nil {
			res.Body.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the renewed certificate is not served: %v", err)
}
