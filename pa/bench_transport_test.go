package pa

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/pua"
)

// BenchmarkNotifyTransport measures PUBLISH → NOTIFY round trips, one at
// a time, to one watcher over UDP, TLS, WS and WSS on loopback: each
// iteration publishes a change and waits until the watcher has the
// NOTIFY carrying it (and pa its 200). The TLS and WebSocket handshakes
// happen once, at the SUBSCRIBE, before the timer starts.
func BenchmarkNotifyTransport(b *testing.B) {
	for _, tr := range []string{"udp", "tls", "ws", "wss"} {
		b.Run(tr, func(b *testing.B) { benchNotifyTransport(b, tr) })
	}
}

func benchNotifyTransport(b *testing.B, tr string) {
	cfg := DefaultConfig()
	cfg.WebSocket.MaxFramesPerSecond = 1 << 30 // a closed loop of 200s, not a flood
	s, addrs, tc := startSecureTB(b, cfg, Options{})
	var ph *sipphone.Phone
	if tr == "udp" {
		ph = sipphone.NewPhone(b, "bob", "example.com")
	} else {
		ph = sipphone.NewFlowPhone(b, "bob", "example.com", tr, tc)
	}
	ctx := context.Background()
	const pres = "sip:alice@example.com"
	w, err := ph.Watch(ctx, addrs[tr], uri(pres), "presence", sipphone.WatchOptions{Expires: 3600})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := w.WaitNotify(ctx, func(sipphone.Notification) bool { return true }); err != nil {
		b.Fatal(err)
	}
	key := pua.Key{PresURI: pres, Event: "presence", ID: "usrloc"}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := "t" + strconv.Itoa(i)
		if err := s.Publish(pua.PublishRequest{Key: key, Body: presenceBody(pres, id, "open")}); err != nil {
			b.Fatal(err)
		}
		if _, err := w.WaitNotify(ctx, func(n sipphone.Notification) bool { return strings.Contains(n.Body, `id="`+id+`"`) }); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "notifies/s")
}
