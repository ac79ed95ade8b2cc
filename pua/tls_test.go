package pua

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/testpki"
)

func tlsEngine(t *testing.T, fs *fakeServer, server string, mod func(*Config)) *Engine {
	return newTestEngine(t, fs, nil, nil, func(c *Config) {
		c.ServerAddress = server
		c.RequestTimeout = 2 * time.Second
		if mod != nil {
			mod(c)
		}
	})
}

func TestPublishOverTLS(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := newFakeServer(t)
	sc, sk := ca.Valid(t, "127.0.0.1")
	server := fs.ServeTLS(t, testpki.ServerConfig(t, sc, sk))
	ours, ourKey := ca.Valid(t, "127.0.0.1")
	f := testpki.WriteFiles(t, t.TempDir(), map[string][]byte{"ca.pem": ca.PEM, "cert.pem": ours, "key.pem": ourKey})
	e := tlsEngine(t, fs, server, func(c *Config) {
		c.Listen = []string{"tls:127.0.0.1:0", "udp:127.0.0.1:0"}
		c.TLS.CAFile, c.TLS.CertFile, c.TLS.KeyFile = f["ca.pem"], f["cert.pem"], f["key.pem"]
	})
	res := mustWait(t, e, pubReq("tls"))
	if res.Status != 200 {
		t.Fatalf("PUBLISH over TLS: %+v", res)
	}
	req := fs.Requests()[0]
	if v := req.Via(); v == nil || v.Transport != "TLS" {
		t.Fatalf("Via %v, want transport TLS", req.Via())
	}
	if c := e.sip.contactURI(); !strings.HasSuffix(c, ";transport=tls") {
		t.Fatalf("contact %q, want the TLS listener", c)
	}
}

func TestTLSRefusesBadServerCertificates(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	other := testpki.NewCA(t, "other CA")
	caFile := testpki.WriteFiles(t, t.TempDir(), map[string][]byte{"ca.pem": ca.PEM})["ca.pem"]
	now := time.Now()
	for _, c := range []struct {
		name       string
		cert, key  []byte
		serverName string
		want       string
	}{
		{"unknown CA", nil, nil, "", "unknown authority"},
		{"expired", nil, nil, "", "expired"},
		{"wrong name", nil, nil, "presence.other.test", "presence.other.test"},
	} {
		t.Run(c.name, func(t *testing.T) {
			switch c.name {
			case "unknown CA":
				c.cert, c.key = other.Valid(t, "127.0.0.1")
			case "expired":
				c.cert, c.key = ca.Leaf(t, now.Add(-48*time.Hour), now.Add(-24*time.Hour), "127.0.0.1")
			default:
				c.cert, c.key = ca.Valid(t, "127.0.0.1")
			}
			fs := newFakeServer(t)
			server := fs.ServeTLS(t, testpki.ServerConfig(t, c.cert, c.key))
			e := tlsEngine(t, fs, server, func(cf *Config) {
				cf.TLS.CAFile, cf.TLS.ServerName = caFile, c.serverName
				cf.RetryMin, cf.RetryMax = time.Hour, time.Hour
			})
			res, err := e.PublishWait(context.Background(), pubReq("x"))
			if err == nil && res.Err == nil {
				t.Fatalf("PUBLISH accepted a bad certificate: %+v", res)
			}
			msg := fmt.Sprint(err, res.Err)
			if !strings.Contains(msg, c.want) {
				t.Fatalf("error %q, want it to say %q", msg, c.want)
			}
			if n := len(fs.Requests()); n != 0 {
				t.Fatalf("%d requests reached the server", n)
			}
		})
	}
}

func TestTLSStalledHandshakes(t *testing.T) {
	// A server that accepts and never speaks: our request ends with
	// request_timeout.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	fs := newFakeServer(t)
	ca := testpki.NewCA(t, "test CA")
	cert, key := ca.Valid(t, "127.0.0.1")
	f := testpki.WriteFiles(t, t.TempDir(), map[string][]byte{"cert.pem": cert, "key.pem": key})
	e := tlsEngine(t, fs, fmt.Sprintf("sips:%s", ln.Addr()), func(c *Config) {
		c.Listen = []string{"udp:127.0.0.1:0", "tls:127.0.0.1:0"}
		c.TLS.CertFile, c.TLS.KeyFile = f["cert.pem"], f["key.pem"]
		c.TLS.HandshakeTimeout = 300 * time.Millisecond
		c.RequestTimeout = 500 * time.Millisecond
		c.RetryMin, c.RetryMax = time.Hour, time.Hour
	})
	start := time.Now()
	res, err := e.PublishWait(context.Background(), pubReq("x"))
	if err == nil && res.Err == nil {
		t.Fatalf("PUBLISH to a stalled TLS server succeeded: %+v", res)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("stalled handshake held the request %v", el)
	}
	// A client that connects to our listener and never speaks is cut off.
	e.sip.mu.RLock()
	port := e.sip.ports["TLS"]
	e.sip.mu.RUnlock()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("stalled inbound handshake not cut off: %v", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestTLSCertificateReload(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := newFakeServer(t)
	cert1, key1 := ca.Valid(t, "127.0.0.1")
	f := testpki.WriteFiles(t, t.TempDir(), map[string][]byte{"cert.pem": cert1, "key.pem": key1})
	e := tlsEngine(t, fs, fs.URI(), func(c *Config) {
		c.Listen = []string{"udp:127.0.0.1:0", "tls:127.0.0.1:0"}
		c.TLS.CertFile, c.TLS.KeyFile = f["cert.pem"], f["key.pem"]
	})
	e.sip.mu.RLock()
	addr := fmt.Sprintf("127.0.0.1:%d", e.sip.ports["TLS"])
	e.sip.mu.RUnlock()
	pool := ca.Pool()
	served := func() []byte {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatalf("TLS to our listener: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Raw
	}
	first := served()
	cert2, key2 := ca.Valid(t, "127.0.0.1")
	time.Sleep(1100 * time.Millisecond) // files are checked at most once a second
	if err := os.WriteFile(f["key.pem"], key2, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f["cert.pem"], cert2, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the renewed certificate served", func() bool { return !bytes.Equal(served(), first) })
}

func TestSIPSRefusesPlainTransport(t *testing.T) {
	fs := newFakeServer(t)
	e := tlsEngine(t, fs, fs.URI(), func(c *Config) { c.RetryMin, c.RetryMax = time.Hour, time.Hour })
	r := pubReq("x")
	r.PresURI = "sips:alice@example.com"
	r.OutboundProxy = fs.URI() + ";transport=udp"
	res, err := e.PublishWait(context.Background(), r)
	msg := fmt.Sprint(err, res.Err)
	if !strings.Contains(msg, "needs TLS") {
		t.Fatalf("sips over UDP: %q, want a refusal", msg)
	}
	if len(fs.Requests()) != 0 {
		t.Fatal("a sips: request went out over UDP")
	}
}
