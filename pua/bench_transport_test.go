package pua

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/siptls"
	"github.com/puaside/puaside/internal/testpki"
)

// BenchmarkPublishTransport measures PUBLISH transactions per second over
// UDP, TCP and TLS against an in-process presence server on loopback (64
// records in parallel, each waiting for its reply). TCP and TLS reuse one
// connection, so the TLS handshake is paid once and amortised over every
// request; BenchmarkTLSHandshake shows what one handshake costs.
func BenchmarkPublishTransport(b *testing.B) {
	for _, tr := range []string{"udp", "tcp", "tls"} {
		b.Run(tr, func(b *testing.B) {
			fs := newFakeServer(b)
			fs.SetQuiet(true)
			ca := testpki.NewCA(b, "bench CA")
			cert, key := ca.Valid(b, "127.0.0.1")
			server := fs.URI()
			switch tr {
			case "tcp":
				server += ";transport=tcp"
			case "tls":
				server = fs.ServeTLS(b, testpki.ServerConfig(b, cert, key))
			}
			caFile := testpki.WriteFiles(b, b.TempDir(), map[string][]byte{"ca.pem": ca.PEM})["ca.pem"]
			e := newTestEngine(b, fs, nil, nil, func(c *Config) {
				c.ServerAddress = server
				c.TLS.CAFile = caFile
				c.MaxOutstanding = 256
				c.RequestTimeout = 10 * time.Second
			})
			benchPublish(b, e)
		})
	}
}

// benchPublish runs b.N PUBLISH transactions from 64 goroutines.
func benchPublish(b *testing.B, e *Engine) {
	var ids, failed atomic.Int64
	b.SetParallelism(64)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		id := ids.Add(1)
		key := Key{PresURI: fmt.Sprintf("sip:user%d@example.com", id), Event: "presence", ID: "bench"}
		n := 0
		for pb.Next() {
			n++
			res, err := e.PublishWait(context.Background(), PublishRequest{Key: key, Body: pidf(fmt.Sprint(n))})
			if err != nil || res.Status != 200 {
				failed.Add(1)
			}
		}
	})
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "publish/s")
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d PUBLISH failed", f, b.N)
	}
}

// BenchmarkTLSHandshake measures one TLS handshake (ECDSA P-256
// certificate, verified against the CA as tls.verify=full does) of a new
// connection to a presence server, the cost a connection pays once.
func BenchmarkTLSHandshake(b *testing.B) {
	ca := testpki.NewCA(b, "bench CA")
	cert, key := ca.Valid(b, "127.0.0.1")
	f := testpki.WriteFiles(b, b.TempDir(), map[string][]byte{"ca.pem": ca.PEM})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", testpki.ServerConfig(b, cert, key))
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	cfg := siptls.DefaultConfig()
	cfg.CAFile = f["ca.pem"]
	tf, err := siptls.NewFiles(cfg)
	if err != nil {
		b.Fatal(err)
	}
	conf := tf.ClientConfig()
	conf.ServerName = "127.0.0.1"
	b.ResetTimer()
	for range b.N {
		c, err := tls.Dial("tcp", ln.Addr().String(), conf)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
