package ingest

import (
	"bufio"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/testpki"
	"github.com/puaside/puaside/metrics"
)

// TestReplicateTLS: t_replicate copies sent over TLS (Kamailio:
// t_replicate("sip:host:port;transport=tls")) are answered on the same
// connection and delivered; a peer that does not speak TLS is dropped
// with reason tls_handshake.
func TestReplicateTLS(t *testing.T) {
	ca := testpki.NewCA(t, "ingest CA")
	cert, key := ca.Valid(t, "127.0.0.1")
	f := testpki.WriteFiles(t, t.TempDir(), map[string][]byte{"cert.pem": cert, "key.pem": key})
	regs, distinct := registerSamples(t)
	rec := newRecorder()
	m := metrics.New()
	cfg := testConfig()
	cfg.ReplicateListen = []string{"tls:127.0.0.1:0"}
	cfg.TLSCert, cfg.TLSKey = f["cert.pem"], f["key.pem"]
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	in := start(t, cfg, rec.handlers(), m, newClock())
	a := addr(t, in, InputReplicate, "tls")

	c, err := tls.Dial("tcp", a, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		for _, s := range regs {
			if _, err := c.Write(s.raw); err != nil {
				return
			}
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	for _, s := range regs {
		res, err := readSIPFrame(r, 65535, nil)
		if err != nil {
			t.Fatalf("%s: reading reply: %v", s.seq, err)
		}
		checkOK(t, s.raw, res)
	}
	rec.wait(t, distinct)

	plain, err := net.Dial("tcp", a)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	plain.Write(regs[0].raw)
	_ = plain.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := plain.Read(make([]byte, 512)); err == nil {
		// The server answers a TLS alert at most; then closes.
		_, _ = plain.Read(make([]byte, 512))
	}
	deadline := time.Now().Add(10 * time.Second)
	for counter(t, m, "puaside_ingest_dropped_total", map[string]string{"input": "replicate", "reason": "tls_handshake"}) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("plain TCP on the TLS input not counted as tls_handshake")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTLSInputNeedsCertificate(t *testing.T) {
	cfg := testConfig()
	cfg.HEPListen = []string{"tls:127.0.0.1:0"}
	if err := cfg.Validate(); err == nil {
		t.Fatal("a tls: input without tls_cert accepted")
	}
}
