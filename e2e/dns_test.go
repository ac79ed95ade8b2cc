package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/dnstest"
	"github.com/puaside/puaside/pua"
)

// TestServerAddressByDNS: server_address is a name; a test DNS server on
// loopback (pua.dns_server) answers NAPTR (TCP), then SRV with a dead
// first target and the Kamailio presence server second. The PUBLISH fails
// over to Kamailio, and once the records' TTL has passed, a change of the
// zone (the dead target gone) is seen by the next lookup.
func TestServerAddressByDNS(t *testing.T) {
	presence := presenceServer(t)
	dead := freePort(t)
	zone := func(srvs ...string) []string {
		z := []string{
			`presence.test. 1 IN NAPTR 10 10 "s" "SIP+D2T" "" _sip._tcp.presence.test.`,
			"dead.presence.test. 1 IN A 127.0.0.1",
			"kam.presence.test. 1 IN A 127.0.0.1",
		}
		return append(z, srvs...)
	}
	deadSRV := fmt.Sprintf("_sip._tcp.presence.test. 1 IN SRV 10 0 %d dead.presence.test.", dead)
	liveSRV := fmt.Sprintf("_sip._tcp.presence.test. 1 IN SRV 20 0 %d kam.presence.test.", presence.Port())
	d := dnstest.Start(t, zone(deadSRV, liveSRV)...)
	cfg := baseConfig(t, nil)
	cfg.PUA.ServerAddress = "sip:presence.test"
	cfg.PUA.DNSServer = d.Addr
	ps := startPuaside(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	key := pua.Key{PresURI: "sip:dnsalice@example.com", Event: "presence", ID: "dns"}
	res, err := ps.d.Engine().PublishWait(ctx, pua.PublishRequest{Key: key, Body: []byte(alicePIDF), Flag: pua.FlagRPCPublish})
	if err != nil || res.Status != 200 {
		t.Fatalf("publish to a server found by NAPTR/SRV with a dead first target: %+v, %v", res, err)
	}
	if n, err := presence.Count(ctx, "presentity", "username = ?", "dnsalice"); err != nil || n != 1 {
		t.Fatalf("presentity rows %d (%v), want 1", n, err)
	}

	// The zone changes: only the live target is left. Past the 1 s TTL the
	// next request looks it up again.
	d.Set(t, zone(liveSRV)...)
	q := d.Queries.Load()
	time.Sleep(1100 * time.Millisecond)
	key.ID = "dns2"
	key.PresURI = "sip:dnsbob@example.com"
	res, err = ps.d.Engine().PublishWait(ctx, pua.PublishRequest{Key: key, Body: []byte(alicePIDF), Flag: pua.FlagRPCPublish})
	if err != nil || res.Status != 200 {
		t.Fatalf("second publish: %+v, %v", res, err)
	}
	if d.Queries.Load() == q {
		t.Fatal("no DNS query after the TTL expired: the cached answer was used beyond its TTL")
	}
}
