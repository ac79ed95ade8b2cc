package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/kamailiotest"
	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/internal/testpki"
)

// TestPAWatcherOverWSSAndTLS: a browser-like watcher (it listens nowhere,
// its Contact is a .invalid host) subscribes to puaside's presence server
// over WSS, another over TLS, both verifying pa's certificate from a test
// CA; alice registers at a real Kamailio registrar that mirrors the
// registration to puaside (t_replicate), and both watchers get her
// presence on their own connection.
func TestPAWatcherOverWSSAndTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ca := testpki.NewCA(t, "e2e CA")
	cert, key := ca.Valid(t, "127.0.0.1")
	f := testpki.WriteFiles(t, t.TempDir(), map[string][]byte{"cert.pem": cert, "key.pem": key})
	cfg := baseConfig(t, nil)
	cfg.Features.Dialoginfo, cfg.Features.BLA = false, false
	cfg.PA.Listen = append(cfg.PA.Listen, "tls:127.0.0.1:0", "wss:127.0.0.1:0")
	cfg.PA.TLS.CertFile, cfg.PA.TLS.KeyFile = f["cert.pem"], f["key.pem"]
	ps := startPuaside(t, cfg)
	addrs := map[string]string{}
	for _, a := range ps.d.PA().Addrs() {
		tr, hp, _ := strings.Cut(a, ":")
		addrs[tr] = hp
	}
	reg := kamailiotest.Start(t, kamailiotest.Options{
		Config: kamailiotest.ConfigPath(t, "registrar.cfg"),
		DB:     kamailiotest.NoDB,
		Defines: map[string]string{
			"WITH_REPLICATE":        "",
			"PUASIDE_REPLICATE_URI": kamailiotest.Str("sip:" + hostPort(cfg.Ingest.ReplicateListen[0])),
			"PUASIDE_SIP_PORT":      strings.TrimPrefix(hostPort(cfg.PUA.Listen[0]), "127.0.0.1:"),
		},
	})
	alice := sipphone.NewPhone(t, "alice", "example.com")
	tc := &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	watchers := map[string]*sipphone.Watcher{}
	for _, tr := range []string{"wss", "tls"} {
		ph := sipphone.NewFlowPhone(t, "watcher"+tr, "example.com", tr, tc)
		w, err := ph.Watch(ctx, addrs[tr], alice.AoR(), "presence", sipphone.WatchOptions{Expires: 600})
		if err != nil {
			t.Fatalf("SUBSCRIBE over %s: %v", tr, err)
		}
		waitNotify(ctx, t, w, waitLimit, "alice closed over "+tr, pidfClosed)
		watchers[tr] = w
	}
	if res, err := alice.Register(ctx, reg.Addr(), 300); err != nil || res.StatusCode != 200 {
		t.Fatalf("register: %v %v", res, err)
	}
	for tr, w := range watchers {
		waitNotify(ctx, t, w, waitLimit, "alice open over "+tr, pidfOpen(alice))
		for _, n := range w.Notifications() {
			if n.Transport != strings.ToUpper(tr) || n.Source != addrs[tr] {
				t.Fatalf("a NOTIFY came over %s from %s, want %s from %s", n.Transport, n.Source, strings.ToUpper(tr), addrs[tr])
			}
		}
	}
}

// TestPABehindKamailioWSSEdge is the browser-phone topology: a watcher
// that listens nowhere connects to Kamailio over secure WebSocket
// (registrar.cfg -A WITH_TLS -A WITH_PA -A WITH_WSS, modules websocket and
// tls, a certificate of a test CA), Kamailio forwards its SUBSCRIBE to
// pa over UDP, record-routed, with its Contact aliased to the WebSocket
// connection; pa's NOTIFYs follow the route set back to Kamailio and down
// the watcher's WebSocket.
func TestPABehindKamailioWSSEdge(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ca := testpki.NewCA(t, "e2e CA")
	cert, key := ca.Valid(t, "127.0.0.1")
	f := testpki.WriteFiles(t, t.TempDir(), map[string][]byte{"cert.pem": cert, "key.pem": key})
	cfg := baseConfig(t, nil)
	cfg.Features.Dialoginfo, cfg.Features.BLA = false, false
	ps := startPuaside(t, cfg)
	tlsPort := freePort(t)
	reg := kamailiotest.Start(t, kamailiotest.Options{
		Config: kamailiotest.ConfigPath(t, "registrar.cfg"),
		DB:     kamailiotest.NoDB,
		Defines: map[string]string{
			"WITH_REPLICATE":        "",
			"WITH_PA":               "",
			"WITH_TLS":              "",
			"WITH_WSS":              "",
			"TLS_PORT":              strconv.Itoa(tlsPort),
			"TLS_CONFIG":            kamailiotest.Str(kamailiotest.WriteTLSConfig(t, kamailiotest.TLSFiles{Cert: f["cert.pem"], Key: f["key.pem"]})),
			"PUASIDE_REPLICATE_URI": kamailiotest.Str("sip:" + hostPort(cfg.Ingest.ReplicateListen[0])),
			"PUASIDE_PA_URI":        kamailiotest.Str("sip:" + hostPort(cfg.PA.Listen[0])),
			"PUASIDE_SIP_PORT":      strings.TrimPrefix(hostPort(cfg.PUA.Listen[0]), "127.0.0.1:"),
		},
	})
	edge := fmt.Sprintf("127.0.0.1:%d", tlsPort)
	alice := sipphone.NewPhone(t, "alice", "example.com")
	browser := sipphone.NewFlowPhone(t, "browser", "example.com", "wss", &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12})
	w, err := browser.Watch(ctx, edge, alice.AoR(), "presence", sipphone.WatchOptions{Expires: 600})
	if err != nil {
		t.Fatalf("SUBSCRIBE over WSS through Kamailio: %v", err)
	}
	waitNotify(ctx, t, w, waitLimit, "alice closed", pidfClosed)
	ws := ps.d.PA().Watchers()
	if len(ws) != 1 || len(ws[0].RouteSet) == 0 || !strings.Contains(ws[0].Contact, "alias=") {
		t.Fatalf("pa holds %+v, want one subscription routed through Kamailio with an aliased Contact", ws)
	}
	if res, err := alice.Register(ctx, reg.Addr(), 300); err != nil || res.StatusCode != 200 {
		t.Fatalf("register: %v %v", res, err)
	}
	waitNotify(ctx, t, w, waitLimit, "alice open", pidfOpen(alice))
	for _, n := range w.Notifications() {
		if n.Transport != "WSS" || n.Source != edge {
			t.Fatalf("a NOTIFY came over %s from %s, want WSS from %s", n.Transport, n.Source, edge)
		}
	}
	// The refresh and the unsubscribe go through the edge too.
	if res, err := w.Refresh(ctx, 600); err != nil || res.StatusCode != 200 {
		t.Fatalf("refresh: %v %v", res, err)
	}
	if err := w.Unsubscribe(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WaitNotify(ctx, func(n sipphone.Notification) bool { return n.Terminated() }); err != nil {
		t.Fatalf("no final NOTIFY: %v", err)
	}
}
