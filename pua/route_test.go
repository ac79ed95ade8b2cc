package pua

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/internal/dnstest"
	"github.com/puaside/puaside/internal/puatest"
	"github.com/puaside/puaside/resolve"
)

// deadTCPPort returns a loopback port nothing listens on.
func deadTCPPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return p
}

func TestServerAddressSRVFailover(t *testing.T) {
	fs := newFakeServer(t)
	dead := deadTCPPort(t)
	d := dnstest.Start(t,
		fmt.Sprintf("_sip._tcp.presence.test. 60 IN SRV 10 0 %d dead.presence.test.", dead),
		fmt.Sprintf("_sip._tcp.presence.test. 60 IN SRV 20 0 %d live.presence.test.", fs.Port()),
		"dead.presence.test. 60 IN A 127.0.0.1",
		"live.presence.test. 60 IN A 127.0.0.1")
	e := newTestEngine(t, fs, nil, nil, func(c *Config) {
		c.ServerAddress = "sip:presence.test;transport=tcp"
		c.DNSServer = d.Addr
	})
	if res := mustWait(t, e, pubReq("a")); res.Status != 200 {
		t.Fatalf("PUBLISH via SRV failover: %+v", res)
	}
	if v := fs.Requests()[0].Via(); v.Transport != "TCP" {
		t.Fatalf("transport %s, want TCP (from the SRV name)", v.Transport)
	}
}

func TestServerAddress503Failover(t *testing.T) {
	busy, fs := newFakeServer(t), newFakeServer(t)
	busy.SetDefault(puatest.Reply{Code: 503})
	d := dnstest.Start(t,
		`presence.test. 60 IN NAPTR 10 10 "s" "SIP+D2U" "" _sip._udp.presence.test.`,
		fmt.Sprintf("_sip._udp.presence.test. 60 IN SRV 10 0 %d a.presence.test.", busy.Port()),
		fmt.Sprintf("_sip._udp.presence.test. 60 IN SRV 20 0 %d b.presence.test.", fs.Port()),
		"a.presence.test. 60 IN A 127.0.0.1",
		"b.presence.test. 60 IN A 127.0.0.1")
	e := newTestEngine(t, fs, nil, nil, func(c *Config) {
		c.ServerAddress = "sip:presence.test"
		c.DNSServer = d.Addr
		c.RequestTimeout = 2 * time.Second
	})
	if res := mustWait(t, e, pubReq("a")); res.Status != 200 {
		t.Fatalf("PUBLISH after a 503: %+v", res)
	}
	if n := len(busy.Requests()); n != 1 {
		t.Fatalf("busy server got %d requests, want 1", n)
	}
	// The busy target is tried last for a while.
	if res := mustWait(t, e, pubReq("b")); res.Status != 200 {
		t.Fatalf("second PUBLISH: %+v", res)
	}
	if n := len(busy.Requests()); n != 1 {
		t.Fatalf("busy server got %d requests, want it skipped after failing", n)
	}
	if n := len(fs.Requests()); n != 2 {
		t.Fatalf("live server got %d requests, want 2", n)
	}
}

// TestHopTargetsKept checks that the targets of a next hop whose host is an
// address are built once per hop and Request-URI transport, and that a hop
// naming a host is looked up each time.
func TestHopTargetsKept(t *testing.T) {
	st := &sipStack{e: &Engine{cfg: Config{RequestTimeout: time.Second}, stopCtx: context.Background()}}
	ruri := func(s string) *sip.Request {
		var u sip.Uri
		if err := sip.ParseUri(s, &u); err != nil {
			t.Fatal(err)
		}
		return sip.NewRequest(sip.PUBLISH, u)
	}
	udp, tcp := ruri("sip:alice@example.com"), ruri("sip:alice@example.com;transport=tcp")
	const hop = "sip:192.0.2.1:5070"
	ts, err := st.targets(context.Background(), udp, hop)
	if err != nil || len(ts) != 1 || ts[0].Transport != "UDP" || ts[0].Addr != "192.0.2.1:5070" {
		t.Fatalf("targets %+v, %v", ts, err)
	}
	if ts, err = st.targets(context.Background(), tcp, hop); err != nil || len(ts) != 1 || ts[0].Transport != "TCP" {
		t.Fatalf("targets with transport=tcp %+v, %v", ts, err)
	}
	if n := len(st.hops.m); n != 2 {
		t.Fatalf("%d hops kept, want 2 (one per Request-URI transport)", n)
	}
	// The kept targets are what a later request gets.
	st.hops.m[hopKeyOf(udp, hop)] = []resolve.Target{{Transport: "UDP", Addr: "192.0.2.9:5060"}}
	if ts, _ = st.targets(context.Background(), udp, hop); len(ts) != 1 || ts[0].Addr != "192.0.2.9:5060" {
		t.Fatalf("targets %+v, want the kept ones", ts)
	}
	if _, err := st.targets(context.Background(), udp, "sip:presence.example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.targets(context.Background(), udp, "sip:presence.example.com;transport=sctp"); err == nil {
		t.Fatal("transport sctp accepted")
	}
	if n := len(st.hops.m); n != 2 {
		t.Fatalf("%d hops kept after a name and an error, want 2", n)
	}
}
