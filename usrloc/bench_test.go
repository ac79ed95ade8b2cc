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

// BenchmarkTracedRegister feeds traced REGISTER requests and their 200s
// (the HEP path) for AoRs seen for the first time, with an OnChange
// consumer: each iteration binds, publishes and notifies one new AoR.
func BenchmarkTracedRegister(b *testing.B) {
	const aors = 1 << 14
	type pair struct{ req, res sip.Message }
	pairs := make([]pair, aors)
	for i := range pairs {
		head := fmt.Sprintf("Via: SIP/2.0/UDP 10.1.%d.%d:5060;branch=z9hG4bK%d\r\n"+
			"From: <sip:u%06d@example.com>;tag=%d\r\nTo: <sip:u%06d@example.com>%%s\r\nCall-ID: c%d@example.com\r\n"+
			"CSeq: 1 REGISTER\r\nContact: <sip:u%06d@10.%d.%d.%d:5060>;expires=3600\r\n",
			i>>8&255, i&255, i, i, i, i, i, i, i>>16&255, i>>8&255, i&255)
		req, err := sip.ParseMessage([]byte("REGISTER sip:example.com SIP/2.0\r\n" + fmt.Sprintf(head, "") +
			"Expires: 3600\r\nUser-Agent: bench\r\nContent-Length: 0\r\n\r\n"))
		if err != nil {
			b.Fatal(err)
		}
		res, err := sip.ParseMessage([]byte("SIP/2.0 200 OK\r\n" + fmt.Sprintf(head, ";tag=r"+fmt.Sprint(i)) +
			"Content-Length: 0\r\n\r\n"))
		if err != nil {
			b.Fatal(err)
		}
		pairs[i] = pair{req, res}
	}
	ctx := context.Background()
	var tr *Tracker
	var changes int
	fresh := func() {
		var err error
		tr, err = New(DefaultConfig(), Options{Publisher: recorder.Nop{}, OnChange: func(string, []Binding) { changes++ }})
		if err != nil {
			b.Fatal(err)
		}
	}
	fresh()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%aors == 0 && i > 0 {
			b.StopTimer()
			fresh()
			b.StartTimer()
		}
		p := pairs[i%aors]
		tr.HandleSIP(ctx, event.SIP{Msg: p.req, Source: event.SourceHEP})
		tr.HandleSIP(ctx, event.SIP{Msg: p.res, Source: event.SourceHEP})
	}
	b.StopTimer()
	if changes < min(b.N, aors) {
		b.Fatalf("%d changes for %d registrations", changes, b.N)
	}
}
