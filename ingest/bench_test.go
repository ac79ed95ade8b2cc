package ingest

import (
	"bytes"
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/puaside/puaside/event"
)

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
		in.handleSIP(InputReplicate, src, copies[i%variants], reply)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "copies/s")
}
