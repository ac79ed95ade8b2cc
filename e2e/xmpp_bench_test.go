package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/internal/daemon"
	"github.com/puaside/puaside/internal/kamailiotest"
	"github.com/puaside/puaside/internal/prosodytest"
	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/pua"
)

// BenchmarkXMPPGatewayLatency measures, on loopback with prosody, Kamailio's
// presence server and puaside, the time from an XMPP user's presence
// change to the NOTIFY of a SIP watcher (xmpp-to-sip), and from a SIP
// user's PUBLISH to the XMPP subscriber's <presence/> (sip-to-xmpp); one
// change at a time, p50/p99/max in milliseconds.
func BenchmarkXMPPGatewayLatency(b *testing.B) {
	pr := prosodytest.Start(b, prosodytest.Options{Domain: xmppDomain, Component: xmppComp, Secret: "s3cret"})
	presence := kamailiotest.Start(b, kamailiotest.Options{Config: kamailiotest.ConfigPath(b, "presence.cfg"), DB: kamailiotest.SQLite})
	port := func() int {
		p, err := kamailiotest.FreePort()
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	cfg := config.Default()
	cfg.LogLevel = "error"
	cfg.DBURL = "sqlite://" + filepath.Join(b.TempDir(), "puaside.db")
	sp := port()
	cfg.PUA.Listen = []string{fmt.Sprintf("udp:127.0.0.1:%d", sp), fmt.Sprintf("tcp:127.0.0.1:%d", sp)}
	cfg.PUA.ServerAddress = presence.URI()
	cfg.Ingest.ReplicateListen, cfg.Ingest.TraceListen, cfg.Ingest.HEPListen = nil, nil, nil
	cfg.HTTP.HTTPListen = fmt.Sprintf("127.0.0.1:%d", port())
	cfg.Features = config.Features{}
	x := &cfg.Gateway
	x.Enabled, x.XMPPDomain, x.XMPPHost, x.XMPPPort, x.XMPPPassword = true, xmppComp, pr.ComponentHost(), pr.ComponentPort(), "s3cret"
	x.GWMap = map[string]string{"example.com": xmppComp}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	d, err := daemon.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = d.Stop(context.Background()) })
	waitB(b, "the gateway connected", func() bool { return d.Gateway().Connected() })

	pr.Register(b, "bob", "pw")
	pr.Register(b, "carol", "pw")
	bob := newXMPPClient(b, pr, "bob@"+xmppDomain+"/desk", "pw")
	bob.send(`<presence/>`)
	bob.send(`<presence to='` + xmppComp + `'/>`)
	waitB(b, "the winfo subscription", func() bool {
		s, ok := d.Engine().Subscription(winfoKeyOf("sip:bob@xmpp.localhost"))
		return ok && s.State == pua.StateActive
	})
	dave := sipphone.NewPhone(b, "dave", "example.com")
	w, err := dave.Watch(ctx, presence.Addr(), sip.Uri{Scheme: "sip", User: "bob", Host: xmppDomain}, "presence", sipphone.WatchOptions{Expires: 3600})
	if err != nil {
		b.Fatal(err)
	}
	daveJID := "dave@" + xmppComp
	bob.waitPresence("the request from dave", func(p xmppPresence) bool { return p.From == daveJID && p.Type == "subscribe" })
	bob.send(`<presence type='subscribed' to='` + daveJID + `'/>`)

	carol := newXMPPClient(b, pr, "carol@"+xmppDomain+"/desk", "pw")
	carol.send(`<presence/>`)
	carol.send(`<presence type='subscribe' to='alice@` + xmppComp + `'/>`)
	waitB(b, "carol's SIP subscription", func() bool {
		s, ok := d.Engine().Subscription(subKeyOf("sip:alice@example.com", "sip:carol@xmpp.localhost"))
		return ok && s.State == pua.StateActive
	})

	b.Run("xmpp-to-sip", func(b *testing.B) {
		var lat []time.Duration
		for i := 0; i < b.N; i++ {
			note := fmt.Sprintf("x2s-%d-%d", b.N, i)
			t0 := time.Now()
			bob.send(`<presence><status>` + note + `</status></presence>`)
			wctx, wcancel := context.WithTimeout(ctx, waitLimit)
			if _, err := w.WaitFor(wctx, func(body string) bool { return strings.Contains(body, note) }); err != nil {
				wcancel()
				b.Fatalf("the SIP watcher never saw %s: %v", note, err)
			}
			wcancel()
			lat = append(lat, time.Since(t0))
		}
		blaReportLatency(b, lat)
	})
	b.Run("sip-to-xmpp", func(b *testing.B) {
		var lat []time.Duration
		key := pua.Key{PresURI: "sip:alice@example.com", Event: "presence", ID: "bench"}
		for i := 0; i < b.N; i++ {
			note := fmt.Sprintf("s2x-%d-%d", b.N, i)
			body := `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
				`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com"><tuple id="b"><status><basic>open</basic></status><note>` +
				note + `</note></tuple></presence>`
			t0 := time.Now()
			if err := d.Engine().Publish(pua.PublishRequest{Key: key, Body: []byte(body), Flag: pua.FlagRPCPublish}); err != nil {
				b.Fatal(err)
			}
			carol.waitPresence(note, func(p xmppPresence) bool { return p.Status == note })
			lat = append(lat, time.Since(t0))
		}
		blaReportLatency(b, lat)
	})
}

// waitB polls cond every 20 ms until it holds or waitLimit passes.
func waitB(b *testing.B, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
