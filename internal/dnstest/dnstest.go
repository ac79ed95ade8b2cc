// Package dnstest runs a small authoritative DNS server on loopback for
// tests of DNS-based SIP routing (RFC 3263).
package dnstest

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// Server is a small authoritative DNS server on loopback (UDP and TCP)
// serving the records it is given.
type Server struct {
	// Addr is the "ip:port" the server answers on (UDP and TCP).
	Addr    string
	mu      sync.Mutex
	records map[string][]dns.RR // lower-case FQDN → records (any type)
	// Queries counts the queries received.
	Queries atomic.Int64
}

// Start starts the server; it stops when the test ends.
func Start(t testing.TB, zone ...string) *Server {
	t.Helper()
	d := &Server{records: map[string][]dns.RR{}}
	d.Set(t, zone...)
	// UDP and TCP on one port: the kernel's UDP pick may have its TCP
	// twin taken by another process, so pick again until both bind.
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for tries := 0; ln == nil; tries++ {
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err != nil {
			pc.Close()
			if tries >= 50 {
				t.Fatal(err)
			}
		}
	}
	d.Addr = pc.LocalAddr().String()
	udp := &dns.Server{PacketConn: pc, Handler: d}
	tcp := &dns.Server{Listener: ln, Handler: d}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	return d
}

// set replaces the zone with the given records (zone-file lines).
func (d *Server) Set(t testing.TB, zone ...string) {
	t.Helper()
	recs := map[string][]dns.RR{}
	for _, line := range zone {
		rr, err := dns.NewRR(line)
		if err != nil {
			t.Fatalf("record %q: %v", line, err)
		}
		n := strings.ToLower(rr.Header().Name)
		recs[n] = append(recs[n], rr)
	}
	d.mu.Lock()
	d.records = recs
	d.mu.Unlock()
}

// ServeDNS answers from the records: those of the asked type, else a
// CNAME, else NODATA (name known) or NXDOMAIN, with an SOA.
func (d *Server) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	d.Queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	name := strings.ToLower(q.Question[0].Name)
	qt := q.Question[0].Qtype
	d.mu.Lock()
	rrs, known := d.records[name]
	for _, rr := range rrs {
		if rr.Header().Rrtype == qt {
			m.Answer = append(m.Answer, dns.Copy(rr))
		}
	}
	if len(m.Answer) == 0 {
		for _, rr := range rrs {
			if rr.Header().Rrtype == dns.TypeCNAME {
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
		}
	}
	d.mu.Unlock()
	if len(m.Answer) == 0 {
		if !known {
			m.Rcode = dns.RcodeNameError
		}
		soa, _ := dns.NewRR("example.test. 60 IN SOA ns.example.test. admin.example.test. 1 60 60 60 10")
		m.Ns = append(m.Ns, soa)
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := 512
		if o := q.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}
