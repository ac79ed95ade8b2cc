package pa

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/puaside/puaside/internal/sipphone"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, addr := startServer(t, DefaultConfig(), Options{Registerer: reg})
	bob := sipphone.NewPhone(t, "bob", "example.com")
	w, err := bob.Watch(context.Background(), addr, uri("sip:alice@example.com"), "presence", sipphone.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wait(t, w, has("closed"))
	publishOpen(t, s, "sip:alice@example.com", "u", "t1")
	wait(t, w, has(`id="t1"`))
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(s.met.notifies.WithLabelValues(EventPresence, "200")) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("NOTIFYs not counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	want := `
# HELP puaside_pa_subscriptions Subscriptions held by the presence server, by event package and state.
# TYPE puaside_pa_subscriptions gauge
puaside_pa_subscriptions{event="presence",state="active"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "puaside_pa_subscriptions"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(s.met.latency); n != 1 {
		t.Fatalf("latency series %d, want 1", n)
	}
	if got := testutil.ToFloat64(s.met.subscribes.WithLabelValues(EventPresence, "200")); got != 1 {
		t.Fatalf("subscribes %v", got)
	}
	if got := testutil.ToFloat64(s.met.pubs.WithLabelValues("inprocess", "ok")); got != 1 {
		t.Fatalf("publications %v", got)
	}
}
