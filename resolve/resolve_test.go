package resolve

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/clock/clocktest"
	"github.com/puaside/puaside/internal/dnstest"
)

// newClock is the tests' fake clock.
func newClock() *clocktest.Fake { return clocktest.New(time.Unix(1_700_000_000, 0)) }
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}
func resolver(t *testing.T, d *dnstest.Server, clk *clocktest.Fake) *Resolver {
	t.Helper()
	r, err := New(Config{Server: d.Addr, Timeout: time.Second, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func addrs(ts []Target) string {
	var s []string
	for _, t := range ts {
		s = append(s, t.Transport+" "+t.Addr)
	}
	return strings.Join(s, ", ")
}

var zone = []string{
	`example.test. 300 IN NAPTR 20 10 "s" "SIP+D2U" "" _sip._udp.example.test.`,
	`example.test. 300 IN NAPTR 10 10 "s" "SIP+D2T" "" _sip._tcp.example.test.`,
	`example.test. 300 IN NAPTR 30 10 "s" "SIPS+D2T" "" _sips._tcp.example.test.`,
	`example.test. 300 IN NAPTR 5 10 "u" "E2U+sip" "!^.*$!sip:x@y!" .`,
	`_sip._tcp.example.test. 300 IN SRV 20 0 5070 p2.example.test.`,
	`_sip._tcp.example.test. 300 IN SRV 10 0 5060 p1.example.test.`,
	`_sip._udp.example.test. 300 IN SRV 10 0 5060 p1.example.test.`,
	`_sips._tcp.example.test. 300 IN SRV 10 0 5061 p1.example.test.`,
	`p1.example.test. 300 IN A 127.0.0.11`,
	`p2.example.test. 300 IN A 127.0.0.12`,
	`p2.example.test. 300 IN AAAA ::1`,
}

func TestLookupNAPTRSRVA(t *testing.T) {
	d := dnstest.Start(t, zone...)
	r := resolver(t, d, newClock())
	got, err := r.Lookup(ctx(t), Name{Host: "example.test"})
	if err != nil {
		t.Fatal(err)
	}
	want := "TCP 127.0.0.11:5060, TCP 127.0.0.12:5070, TCP [::1]:5070, UDP 127.0.0.11:5060, TLS 127.0.0.11:5061"
	if addrs(got) != want {
		t.Fatalf("targets\n got %s\nwant %s", addrs(got), want)
	}
	if got[0].Host != "example.test" {
		t.Fatalf("target host %q, want the SIP domain", got[0].Host)
	}
}

func TestLookupTransportAndSecure(t *testing.T) {
	d := dnstest.Start(t, zone...)
	r := resolver(t, d, newClock())
	for _, c := range []struct {
		n    Name
		want string
	}{
		{Name{Host: "example.test", Secure: true}, "TLS 127.0.0.11:5061"},
		{Name{Host: "example.test", Transport: "udp"}, "UDP 127.0.0.11:5060"},
		{Name{Host: "p2.example.test", Port: 5999}, "UDP 127.0.0.12:5999, UDP [::1]:5999"},
		{Name{Host: "p1.example.test"}, "UDP 127.0.0.11:5060"},                   // no NAPTR, no SRV
		{Name{Host: "p1.example.test", Transport: "tls"}, "TLS 127.0.0.11:5061"}, // no SRV: default port
		{Name{Host: "192.0.2.1"}, "UDP 192.0.2.1:5060"},
		{Name{Host: "[::1]", Secure: true}, "TLS [::1]:5061"},
	} {
		got, err := r.Lookup(ctx(t), c.n)
		if err != nil {
			t.Fatalf("%+v: %v", c.n, err)
		}
		if addrs(got) != c.want {
			t.Errorf("%+v: got %s, want %s", c.n, addrs(got), c.want)
		}
	}
	if _, err := r.Lookup(ctx(t), Name{Host: "example.test", Secure: true, Transport: "udp"}); err == nil {
		t.Error("sips with transport=udp accepted")
	}
	if _, err := r.Lookup(ctx(t), Name{Host: "nowhere.example.test"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown name: %v, want ErrNotFound", err)
	}
}

func TestLookupHonoursTTL(t *testing.T) {
	d := dnstest.Start(t,
		`_sip._udp.ttl.example.test. 30 IN SRV 10 0 5060 a.ttl.example.test.`,
		`a.ttl.example.test. 10 IN A 127.0.0.21`)
	clk := newClock()
	r := resolver(t, d, clk)
	n := Name{Host: "ttl.example.test", Transport: "udp"}
	first, err := r.Lookup(ctx(t), n)
	if err != nil || addrs(first) != "UDP 127.0.0.21:5060" {
		t.Fatalf("first lookup %s, %v", addrs(first), err)
	}
	d.Set(t,
		`_sip._udp.ttl.example.test. 30 IN SRV 10 0 5060 a.ttl.example.test.`,
		`a.ttl.example.test. 10 IN A 127.0.0.22`)
	q := d.Queries.Load()
	clk.Advance(9 * time.Second)
	if got, _ := r.Lookup(ctx(t), n); addrs(got) != "UDP 127.0.0.21:5060" || d.Queries.Load() != q {
		t.Fatalf("within TTL: %s after %d new queries, want the cached answer and none", addrs(got), d.Queries.Load()-q)
	}
	clk.Advance(2 * time.Second)
	if got, _ := r.Lookup(ctx(t), n); addrs(got) != "UDP 127.0.0.22:5060" {
		t.Fatalf("after the A record's TTL: %s, want the new address", addrs(got))
	}
	if d.Queries.Load()-q != 2 { // A and AAAA of the target; the SRV is still cached
		t.Fatalf("after the A TTL: %d queries, want 2 (A, AAAA)", d.Queries.Load()-q)
	}
}

func TestLookupNegativeCache(t *testing.T) {
	d := dnstest.Start(t, `a.neg.example.test. 60 IN A 127.0.0.5`)
	clk := newClock()
	r := resolver(t, d, clk)
	if _, err := r.Lookup(ctx(t), Name{Host: "gone.example.test"}); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	q := d.Queries.Load()
	r.Lookup(ctx(t), Name{Host: "gone.example.test"})
	if d.Queries.Load() != q {
		t.Fatalf("negative answer not cached: %d new queries", d.Queries.Load()-q)
	}
	clk.Advance(11 * time.Second) // the SOA minimum of the test zone is 10s
	r.Lookup(ctx(t), Name{Host: "gone.example.test"})
	if d.Queries.Load() == q {
		t.Fatal("negative answer cached beyond the SOA minimum")
	}
}

func TestLookupBadAnswers(t *testing.T) {
	var huge []string
	for i := range 200 {
		huge = append(huge, fmt.Sprintf("huge.example.test. 60 IN A 10.0.%d.%d", i/250, i%250+1))
	}
	zone := append(huge,
		`loop1.example.test. 60 IN CNAME loop2.example.test.`,
		`loop2.example.test. 60 IN CNAME loop1.example.test.`,
		`_sip._udp.srvloop.example.test. 60 IN SRV 10 0 5060 loop1.example.test.`,
	)
	for i := range 12 {
		zone = append(zone, fmt.Sprintf("c%d.example.test. 60 IN CNAME c%d.example.test.", i, i+1))
	}
	zone = append(zone, "c12.example.test. 60 IN A 127.0.0.9", "c3.example.test. 60 IN TXT x")
	d := dnstest.Start(t, zone...)
	r := resolver(t, d, newClock())
	for _, c := range []struct{ host, want string }{
		{"huge.example.test", "more than the 64 accepted"},
		{"loop1.example.test", "CNAME loop"},
		{"c0.example.test", "CNAME chain longer"},
		{"srvloop.example.test", "no address found"},
	} {
		_, err := r.Lookup(ctx(t), Name{Host: c.host, Transport: "udp"})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.host, err, c.want)
		}
	}
	// A short chain is followed.
	if got, err := r.Lookup(ctx(t), Name{Host: "c6.example.test", Port: 5060}); err != nil || addrs(got) != "UDP 127.0.0.9:5060" {
		t.Errorf("short CNAME chain: %s, %v", addrs(got), err)
	}
}

func TestLookupMaxTargetsAndDeadServer(t *testing.T) {
	var z []string
	for i := range 40 {
		z = append(z, fmt.Sprintf("_sip._udp.many.example.test. 60 IN SRV %d 0 5060 h%d.example.test.", i, i),
			fmt.Sprintf("h%d.example.test. 60 IN A 127.0.1.%d", i, i+1))
	}
	d := dnstest.Start(t, z...)
	r := resolver(t, d, newClock())
	got, err := r.Lookup(ctx(t), Name{Host: "many.example.test", Transport: "udp"})
	if err != nil || len(got) != defaultMaxTargets {
		t.Fatalf("got %d targets (%v), want %d", len(got), err, defaultMaxTargets)
	}
	dead, err := New(Config{Server: "127.0.0.1:1", Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dead.Lookup(ctx(t), Name{Host: "many.example.test"}); err == nil || !strings.Contains(err.Error(), "asking 127.0.0.1:1") {
		t.Fatalf("dead DNS server: %v", err)
	}
	// Right after, the dead server is not asked again: the lookup fails at once.
	if _, err := dead.Lookup(ctx(t), Name{Host: "many.example.test"}); err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("dead DNS server, second lookup: %v", err)
	}
}
