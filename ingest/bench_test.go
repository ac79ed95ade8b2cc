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
	// The clock advances 10 ms per reading, so a variant is out of the
	// dedup window by the time it comes round again.
	var ticks atomic.Int64
	t0 := time.Unix(1795382000, 0)
	now := func() time.Time { return t0.Add(time.Duration(ticks.Add(1)) * 10 * time.Millisecond) }
	cfg := testConfig()
	cfg.QueueSize = 1 << 16
	var delivered atomic.Int64
	in, err := New(cfg, Handlers{Register: func(context.Context, event.SIP) { delivered.Add(1) }}, Options{Now: now})
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
		in.handleSIP(InputReplicate, src, copies[i%variants], reply)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "copies/s")
}
