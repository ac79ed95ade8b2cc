package dialoginfo

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/internal/puatest/recorder"
)

// callMsgs builds the parsed messages of call i: INVITE, 100, 180, 200, ACK, BYE, 200.
func callMsgs(b testing.TB, i int) []sip.Message {
	cid := fmt.Sprintf("bench-%d@10.0.0.1", i)
	from := fmt.Sprintf("<sip:u%d@example.com>;tag=f%d", i%5000, i)
	to := fmt.Sprintf("<sip:u%d@example.com>", (i+1)%5000)
	tt := to + ";tag=t" + fmt.Sprint(i)
	h := func(first, toh, cseq, extra string) sip.Message {
		s := first + "\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK" + cid + "\r\nFrom: " + from + "\r\nTo: " + toh +
			"\r\nCall-ID: " + cid + "\r\nCSeq: " + cseq + "\r\n" + extra + "Content-Length: 0\r\n\r\n"
		m, err := sip.ParseMessage([]byte(s))
		if err != nil {
			b.Fatal(err)
		}
		return m
	}
	ct := "Contact: <sip:x@10.0.0.9>\r\n"
	return []sip.Message{
		h("INVITE sip:x@example.com SIP/2.0", to, "1 INVITE", ct),
		h("SIP/2.0 100 Trying", to, "1 INVITE", ""),
		h("SIP/2.0 180 Ringing", tt, "1 INVITE", ct),
		h("SIP/2.0 200 OK", tt, "1 INVITE", ct),
		h("ACK sip:x@10.0.0.9 SIP/2.0", tt, "1 ACK", ""),
		h("BYE sip:x@10.0.0.9 SIP/2.0", tt, "2 BYE", ""),
		h("SIP/2.0 200 OK", tt, "2 BYE", ""),
	}
}

// BenchmarkCallSetupTeardown measures whole calls (7 messages each, one
// SIP copy of each) through HandleSIP with a no-op publisher; messages are
// parsed beforehand.
func BenchmarkCallSetupTeardown(b *testing.B) {
	const pool = 1000
	calls := make([][]sip.Message, pool)
	for i := range calls {
		calls[i] = callMsgs(b, i)
	}
	clk := newFakeClock()
	tr, err := New(DefaultConfig(), Options{Publisher: recorder.Nop{}, Clock: clk, Logger: quietLog()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, m := range calls[i%pool] {
			tr.HandleSIP(ctx, event.SIP{Msg: m})
		}
		if i%pool == pool-1 {
			tr.Expire(clk.Advance(DefaultConfig().TerminatedLinger * 2)) // let ended calls go
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

// BenchmarkActiveCallHeap measures the heap held per confirmed call with
// 50,000 calls up at once.
func BenchmarkActiveCallHeap(b *testing.B) {
	const n = 50000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		msgs := make([][]sip.Message, n)
		for j := range msgs {
			msgs[j] = callMsgs(b, j)[:5] // up to the ACK: the call stays up
		}
		tr, err := New(DefaultConfig(), Options{Publisher: recorder.Nop{}, Clock: newFakeClock(), Logger: quietLog()})
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()
		for _, call := range msgs {
			for _, m := range call {
				tr.HandleSIP(context.Background(), event.SIP{Msg: m})
			}
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(msgs)
		if len(tr.Dialogs()) != n {
			b.Fatalf("%d dialogs tracked, want %d", len(tr.Dialogs()), n)
		}
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/n, "B/call")
		runtime.KeepAlive(tr)
	}
}
