package ingest

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/event"
)

// BenchmarkParseMirror measures the parse of one t_replicate REGISTER copy
// alone (sipgo's parser and the checks of parseMirror): the part a leaner
// codec of the copy's headers would replace.
func BenchmarkParseMirror(b *testing.B) {
	raw := wireBytes(b, "testdata/replicate/001.sip.txt")
	p := sip.NewParser()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseMirror(p, raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReplicateRegister measures replicated REGISTER copies per second
// through parse, stateless 200, dedup and the queue, with the workers
// draining into a no-op handler.
func BenchmarkReplicateRegister(b *testing.B) {
	base := wireBytes(b, "testdata/replicate/001.sip.txt")
	const variants = 4096
	copies := make([][]byte, variants)
	for i := range copies {
		copies[i] = bytes.Replace(base, []byte("CSeq: 1 REGISTER"), []byte("CSeq: "+strconv.Itoa(i+1)+" REGISTER"), 1)
	}
	// The clock moves a minute each time the variants come round again,
	// so a variant is out of the dedup window by then.
	clk := newClock()
	cfg := testConfig()
	cfg.QueueSize = 1 << 16
	var delivered atomic.Int64
	in, err := New(cfg, Handlers{Register: func(context.Context, event.SIP) { delivered.Add(1) }}, Options{Clock: clk})
	if err != nil {
		b.Fatal(err)
	}
	if err := in.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer in.Stop()
	src := mustAddrPort("127.0.0.1:5070")
	reply := func([]byte) {}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%variants == 0 {
			clk.Advance(time.Minute)
		}
		in.handleSIP(InputReplicate, src, copies[i%variants], reply, false)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "copies/s")
}

// BenchmarkTraceCallCopies measures siptrace copies through parse, dedup
// and the queue when every message arrives twice (as received and as
// forwarded by the proxy, with the proxy's Via on top): each iteration is
// one such pair, the second a duplicate.
func BenchmarkTraceCallCopies(b *testing.B) {
	const variants = 4096
	pairs := make([][2][]byte, variants)
	for i := range pairs {
		first := "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 10.2.0.1:5060;received=10.2.0.1;branch=z9hG4bK-" + strconv.Itoa(i) + ";rport=5060\r\n" +
			"From: <sip:alice@example.com>;tag=ft" + strconv.Itoa(i) + "\r\nTo: <sip:bob@example.com>;tag=tt" + strconv.Itoa(i) + "\r\n" +
			"Call-ID: bench-" + strconv.Itoa(i) + "@10.2.0.1\r\nCSeq: 1 INVITE\r\n" +
			"Record-Route: <sip:10.0.0.1;lr;ftag=ft" + strconv.Itoa(i) + ">\r\nContact: <sip:bob@10.3.0.1:5060>\r\nContent-Length: 0\r\n\r\n"
		pairs[i][0] = []byte(strings.Replace(first, "Via: ", "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK3d34."+strconv.Itoa(i)+".0\r\nVia: ", 1))
		pairs[i][1] = []byte(first)
	}
	// The clock moves a minute each time the variants come round again,
	// so a variant is out of the dedup window by then.
	clk := newClock()
	cfg := testConfig()
	cfg.QueueSize = 1 << 16
	in, err := New(cfg, Handlers{Call: func(context.Context, event.SIP) {}}, Options{Clock: clk})
	if err != nil {
		b.Fatal(err)
	}
	if err := in.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer in.Stop()
	src := mustAddrPort("127.0.0.1:5070")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%variants == 0 {
			clk.Advance(time.Minute)
		}
		p := pairs[i%variants]
		in.handleSIP(InputTrace, src, p[0], nil, false)
		in.handleSIP(InputTrace, src, p[1], nil, false)
	}
	b.StopTimer()
	b.ReportMetric(float64(2*b.N)/b.Elapsed().Seconds(), "copies/s")
}
