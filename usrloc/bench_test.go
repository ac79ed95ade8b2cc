package usrloc

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/internal/puatest/recorder"
)

// BenchmarkHandleSIP100k feeds parsed REGISTER copies for 100,000 AoRs
// (replicate path) into a tracker with a no-op publisher. It reports the
// REGISTER copies handled per second and the heap held per AoR.
func BenchmarkHandleSIP100k(b *testing.B) {
	const aors = 100000
	msgs := make([]*sip.Request, aors)
	for i := range msgs {
		raw := fmt.Sprintf("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK%d\r\n"+
			"From: <sip:u%06d@example.com>;tag=%d\r\nTo: <sip:u%06d@example.com>\r\nCall-ID: c%d@example.com\r\n"+
			"CSeq: 1 REGISTER\r\nContact: <sip:u%06d@10.%d.%d.%d:5060>\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n",
			i, i, i, i, i, i, i>>16&255, i>>8&255, i&255)
		m, err := sip.ParseMessage([]byte(raw))
		if err != nil {
			b.Fatal(err)
		}
		msgs[i] = m.(*sip.Request)
	}
	ctx := context.Background()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tr, err := New(DefaultConfig(), Options{Publisher: recorder.Nop{}})
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range msgs {
		tr.HandleSIP(ctx, event.SIP{Msg: m, Source: event.SourceReplicate})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n := len(tr.Registrations()); n != aors {
		b.Fatalf("%d AoRs", n)
	}
	heapPerAoR := float64(after.HeapAlloc-before.HeapAlloc) / aors
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tr.HandleSIP(ctx, event.SIP{Msg: msgs[i%aors], Source: event.SourceReplicate})
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "REGISTER/s")
	b.ReportMetric(heapPerAoR, "heapB/AoR")
}
