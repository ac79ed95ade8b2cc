package puaxmpp

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/puaside/puaside/pua"
)

// discardEngine accepts every request and keeps nothing.
type discardEngine struct{}

func (discardEngine) Publish(pua.PublishRequest) error     { return nil }
func (discardEngine) Remove(pua.Key) error                 { return nil }
func (discardEngine) Subscribe(pua.SubscribeRequest) error { return nil }
func (discardEngine) Unsubscribe(pua.SubKey) error         { return nil }
func (discardEngine) Refresh(pua.SubKey) error             { return nil }
func (discardEngine) Subscription(pua.SubKey) (pua.SubscriptionInfo, bool) {
	return pua.SubscriptionInfo{}, false
}
func (discardEngine) Subscriptions() []pua.SubscriptionInfo { return nil }

// BenchmarkGatewayUsers measures the gateway's own memory per online XMPP
// user (one resource with a status, one contact, its winfo subscription
// flag) and reports how many such users one GiB holds. The engine's
// records for them (one publication and one winfo subscription each) are
// counted by the pua engine's own benchmarks.
func BenchmarkGatewayUsers(b *testing.B) {
	c := DefaultConfig()
	c.XMPPPassword = "s"
	c.GWMap = map[string]string{"example.com": c.XMPPDomain}
	c.MaxUsers = b.N + 1
	g, err := New(c, Options{Publisher: discardEngine{}, Subscriber: discardEngine{}})
	if err != nil {
		b.Fatal(err)
	}
	to := jid.MustParse("alice@" + c.XMPPDomain)
	ctx := context.Background()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		from := jid.MustParse(fmt.Sprintf("user%d@xmpp.example.com/phone", i))
		g.handlePresence(ctx, inPresence{From: from, To: to, Show: ShowAway, Status: "at lunch", Priority: 1})
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if g.Users() != b.N {
		b.Fatalf("%d users held, want %d", g.Users(), b.N)
	}
	per := (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(b.N)
	if per <= 0 {
		b.Skip("heap shrank during the run: run with a larger -benchtime")
	}
	b.ReportMetric(per, "bytes/user")
	b.ReportMetric(float64(1<<30)/per, "users/GiB")
	runtime.KeepAlive(g)
}
