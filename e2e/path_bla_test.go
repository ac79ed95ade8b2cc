package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/bla"
	"github.com/puaside/puaside/internal/kamailiotest"
)

// TestBLAPhoneThroughEdgePath: a shared-line phone registers over TCP (its
// Contact port closed) through an edge proxy (deploy/kamailio/edge.cfg),
// which adds a Path naming itself and the phone's flow
// (add_path_received()); the registrar (registrar.cfg -A WITH_PATH) keeps
// it. puaside's dialog;sla SUBSCRIBE, sent to the registrar, goes to the
// contact's Path (the edge) and from there down the phone's own TCP
// connection; the phone's NOTIFY comes back along the Record-Route (edge,
// registrar) and is published to the presence server.
func TestBLAPhoneThroughEdgePath(t *testing.T) {
	runEdgeBLA(t, nil, nil)
}

// TestBLAPhoneThroughEdgeOutbound: the same with RFC 5626 outbound. The
// phone registers with "Supported: outbound" and a reg-id/+sip.instance
// Contact; the edge (edge.cfg -A WITH_OUTBOUND) adds a Path whose only
// routing information is its flow token (add_path(), no "received"), the
// registrar (-A WITH_OUTBOUND) accepts the outbound registration, and the
// SUBSCRIBE reaches the phone on its connection because the edge's
// loose_route() decodes the token.
func TestBLAPhoneThroughEdgeOutbound(t *testing.T) {
	p := runEdgeBLA(t, map[string]string{"WITH_OUTBOUND": ""}, func(p *tlsPhone) {
		p.regParams = `;reg-id=1;+sip.instance="<urn:uuid:00000000-0000-4000-8000-00000000a100>"`
		p.regHeaders = "Supported: outbound, path\r\n"
	})
	if h := p.regRes.GetHeader("Require"); h == nil || !strings.Contains(h.Value(), "outbound") {
		t.Errorf("200 to REGISTER without Require: outbound (%v): the registrar did not take it as an outbound registration", h)
	}
	if h := p.regRes.GetHeader("Path"); h == nil || !strings.Contains(h.Value(), ";ob") || strings.Contains(h.Value(), "received=") {
		t.Errorf("Path in the 200 %v, want the edge's flow-token URI (;ob, no received)", h)
	}
}

// runEdgeBLA starts the presence server, the registrar (WITH_PATH, and
// defs) and the edge (defs) on free ports, and puaside with the line and
// bla.outbound_proxy the registrar; a TCP phone (prep adjusts its
// REGISTER) registers through the edge, takes puaside's SUBSCRIBE on its
// connection and NOTIFYs back; the state must reach the presence server.
func runEdgeBLA(t *testing.T, defs map[string]string, prep func(*tlsPhone)) *tlsPhone {
	t.Helper()
	presence := presenceServer(t)
	cfg := baseConfig(t, presence)
	cfg.Features.Dialoginfo = false
	cfg.BLA.Lines = []bla.LineConfig{{AoR: blaLine}}
	cfg.BLA.ServerAddress = ""
	regDefs := map[string]string{
		"WITH_REPLICATE":        "",
		"PUASIDE_REPLICATE_URI": kamailiotest.Str("sip:" + hostPort(cfg.Ingest.ReplicateListen[0])),
		"WITH_PATH":             "",
	}
	for k, v := range defs {
		regDefs[k] = v
	}
	reg := kamailiotest.Start(t, kamailiotest.Options{Config: kamailiotest.ConfigPath(t, "registrar.cfg"), Defines: regDefs})
	edgeDefs := map[string]string{"REGISTRAR_URI": kamailiotest.Str(reg.URI())}
	for k, v := range defs {
		edgeDefs[k] = v
	}
	edge := kamailiotest.Start(t, kamailiotest.Options{Config: kamailiotest.ConfigPath(t, "edge.cfg"), Defines: edgeDefs})
	cfg.BLA.OutboundProxy = reg.URI()
	ps := startPuaside(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	phone := dialTCPPhone(t, edge.Addr(), freePort(t))
	if prep != nil {
		prep(phone)
	}
	if code := phone.register(ctx); code != 200 {
		t.Fatalf("REGISTER through the edge: %d", code)
	}
	var sub *sip.Request
	for sub == nil {
		select {
		case m := <-phone.got:
			if m.Method == sip.SUBSCRIBE {
				sub = m
			}
		case <-ctx.Done():
			t.Fatal("the phone never got a SUBSCRIBE on its TCP connection to the edge")
		}
	}
	if ev := headerOr(sub, "Event", ""); ev != polSLA {
		t.Fatalf("SUBSCRIBE Event %q, want %s", ev, polSLA)
	}
	if sub.Recipient.String() != phone.contact {
		t.Fatalf("SUBSCRIBE to %s, want the phone's contact %s", sub.Recipient.String(), phone.contact)
	}
	if v := sub.Via(); v == nil || !strings.EqualFold(v.Transport, "TCP") || v.Port != edge.Port() {
		t.Fatalf("top Via %v, want the edge's TCP hop (port %d)", sub.Via(), edge.Port())
	}
	if h := sub.GetHeader("Route"); h != nil {
		t.Fatalf("the edge left a Route header for the phone: %s", h.Value())
	}
	var rr []string
	for _, h := range sub.GetHeaders("Record-Route") {
		rr = append(rr, h.Value())
	}
	if all := strings.Join(rr, ","); !strings.Contains(all, ":"+strconv.Itoa(edge.Port())) || !strings.Contains(all, ":"+strconv.Itoa(reg.Port())) {
		t.Fatalf("Record-Route %q, want the edge (%d) and the registrar (%d)", all, edge.Port(), reg.Port())
	}
	eventually(t, "puaside's subscription to the phone accepted", func() bool {
		for _, s := range ps.d.Engine().Subscriptions() {
			if s.Key.Event == polSLA && s.LastStatus == 200 {
				return true
			}
		}
		return false
	})

	body := blaDoc(blaLine, 1, "full", blaDialog{"path-call-1", "confirmed", "1"})
	if code := phone.notify(ctx, sub, body); code != 200 {
		t.Fatalf("NOTIFY back through the edge and the registrar: %d", code)
	}
	eventually(t, "the phone's dialog;sla state published to the presence server", func() bool {
		n, err := presence.Count(ctx, "presentity", "username = ? AND domain = ? AND event = ?", "line100", "example.com", polSLA)
		return err == nil && n == 1
	})
	return phone
}
