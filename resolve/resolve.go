package resolve

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/puaside/puaside/clock"
)

// Limits on what one lookup may take from the DNS.
const (
	// maxCNAME is the longest CNAME chain followed.
	maxCNAME = 8
	// maxRecords is the most records taken from one answer section; an
	// answer with more is refused.
	maxRecords = 64
	// defaultMaxTargets is the most targets one Lookup returns.
	defaultMaxTargets = 16
	// maxNegativeTTL caps how long a negative answer is cached.
	maxNegativeTTL = 5 * time.Minute
	// defaultNegativeTTL is used when a negative answer carries no SOA.
	defaultNegativeTTL = 30 * time.Second
	// serverDownFor is how long the DNS server is not asked after it did
	// not answer: lookups fail at once meanwhile.
	serverDownFor = 5 * time.Second
	// maxCacheEntries bounds the cache; when full, expired entries are
	// dropped, and if none were, the whole cache.
	maxCacheEntries = 4096
)

// ErrNotFound is returned when a name has no usable address.
var ErrNotFound = errors.New("resolve: no address found")

// Name is a SIP destination as written in a URI.
type Name struct {
	// Host is a domain name or a literal IP address.
	Host string
	// Port is the explicit port, 0 when the URI has none.
	Port int
	// Transport is the URI's transport parameter ("udp", "tcp", "tls"),
	// empty when it has none.
	Transport string
	// Secure is true for a sips: URI: only TLS targets are returned.
	Secure bool
}

// Target is one place to send a request to, in the order to try them.
type Target struct {
	// Transport is "UDP", "TCP" or "TLS".
	Transport string
	// Addr is "ip:port".
	Addr string
	// Host is the domain name the target was found for (the SIP domain for
	// certificate checks, RFC 5922), or the literal IP.
	Host string
}

// Config configures a Resolver.
type Config struct {
	// Server is the DNS server's "host:port"; empty means the first
	// nameserver in /etc/resolv.conf.
	Server string
	// Timeout bounds one DNS exchange; 0 means 2s.
	Timeout time.Duration
	// MaxTargets caps the targets one lookup returns; 0 means 16.
	MaxTargets int
	// Clock ages the cache; nil is the wall clock (tests pass
	// clocktest.Fake).
	Clock clock.Clock
}

// Resolver resolves SIP destinations with a TTL cache. It is safe for
// concurrent use.
type Resolver struct {
	server string
	client *dns.Client
	maxT   int
	now    func() time.Time

	mu        sync.Mutex
	cache     map[cacheKey]cacheEntry
	downUntil time.Time // the server is not asked before
}

type cacheKey struct {
	name  string
	qtype uint16
}

type cacheEntry struct {
	rrs     []dns.RR // nil: negative answer
	expires time.Time
}

// New returns a Resolver.
func New(cfg Config) (*Resolver, error) {
	server := cfg.Server
	if server == "" {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil || len(cc.Servers) == 0 {
			return nil, fmt.Errorf("resolve: no DNS server configured and none in /etc/resolv.conf: %v", err)
		}
		server = net.JoinHostPort(cc.Servers[0], cc.Port)
	}
	if _, _, err := net.SplitHostPort(server); err != nil {
		return nil, fmt.Errorf("resolve: DNS server %q: %w", server, err)
	}
	r := &Resolver{server: server, maxT: cfg.MaxTargets, now: clock.OrReal(cfg.Clock).Now, cache: make(map[cacheKey]cacheEntry)}
	if r.maxT <= 0 {
		r.maxT = defaultMaxTargets
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	r.client = &dns.Client{Net: "udp", Timeout: timeout, UDPSize: dns.DefaultMsgSize}
	return r, nil
}

// transport names of the NAPTR services we can use (RFC 3263 §4.1).
var naptrServices = map[string]string{"SIP+D2U": "UDP", "SIP+D2T": "TCP", "SIPS+D2T": "TLS"}

// srvPrefix is the SRV owner prefix of each transport (RFC 3263 §4.1).
var srvPrefix = map[string]string{"UDP": "_sip._udp.", "TCP": "_sip._tcp.", "TLS": "_sips._tcp."}

// Lookup returns the targets of n in the order to try them (RFC 3263 §4).
func (r *Resolver) Lookup(ctx context.Context, n Name) ([]Target, error) {
	tr := strings.ToUpper(n.Transport)
	if tr != "" && srvPrefix[tr] == "" {
		return nil, fmt.Errorf("resolve: %s: transport %q not supported", n.Host, n.Transport)
	}
	if n.Secure {
		if tr != "" && tr != "TLS" && tr != "TCP" {
			return nil, fmt.Errorf("resolve: sips:%s: transport %s is not secure", n.Host, tr)
		}
		tr = "TLS"
	}
	host := strings.TrimSuffix(strings.Trim(n.Host, "[]"), ".")
	if ip := net.ParseIP(host); ip != nil {
		return []Target{{Transport: orDefault(tr, "UDP"), Addr: net.JoinHostPort(ip.String(), strconv.Itoa(defaultPort(n.Port, tr))), Host: ip.String()}}, nil
	}
	if host == "" {
		return nil, fmt.Errorf("resolve: empty host")
	}
	if n.Port != 0 {
		// An explicit port: addresses only (§4.2).
		return r.addrTargets(ctx, host, host, orDefault(tr, "UDP"), n.Port, nil)
	}
	type srvName struct{ name, transport string }
	var srvs []srvName
	if tr == "" {
		naptrs, err := r.naptr(ctx, host)
		if err != nil {
			return nil, err
		}
		for _, np := range naptrs {
			srvs = append(srvs, srvName{np.Replacement, naptrServices[strings.ToUpper(np.Service)]})
		}
		if len(srvs) == 0 {
			for _, t := range []string{"TLS", "TCP", "UDP"} {
				srvs = append(srvs, srvName{srvPrefix[t] + host + ".", t})
			}
		}
	} else {
		srvs = []srvName{{srvPrefix[tr] + host + ".", tr}}
	}
	var out []Target
	var lastErr error
	found := false
	for _, s := range srvs {
		if n.Secure && s.transport != "TLS" {
			continue
		}
		recs, err := r.srv(ctx, s.name)
		if err != nil {
			lastErr = err
			continue
		}
		for _, rec := range recs {
			found = true
			if rec.Target == "." {
				continue // "service not available here" (RFC 2782)
			}
			out, err = r.addrTargets(ctx, strings.TrimSuffix(rec.Target, "."), host, s.transport, int(rec.Port), out)
			if err != nil && !errors.Is(err, ErrNotFound) {
				lastErr = err
			}
			if len(out) >= r.maxT {
				return out[:r.maxT], nil
			}
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	if found {
		return nil, fmt.Errorf("resolve: %s: %w for any SRV target", host, ErrNotFound)
	}
	if lastErr != nil && !errors.Is(lastErr, ErrNotFound) {
		return nil, lastErr
	}
	// No NAPTR and no SRV: the host's own addresses (§4.2).
	return r.addrTargets(ctx, host, host, orDefault(tr, "UDP"), defaultPort(0, tr), nil)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func defaultPort(p int, tr string) int {
	if p != 0 {
		return p
	}
	if tr == "TLS" {
		return 5061
	}
	return 5060
}

// addrTargets appends a target per A/AAAA address of name (IPv4 first).
func (r *Resolver) addrTargets(ctx context.Context, name, domain, tr string, port int, out []Target) ([]Target, error) {
	var firstErr error
	n := len(out)
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		rrs, err := r.query(ctx, name, qt)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		for _, rr := range rrs {
			var ip net.IP
			switch a := rr.(type) {
			case *dns.A:
				ip = a.A
			case *dns.AAAA:
				ip = a.AAAA
			default:
				continue
			}
			out = append(out, Target{Transport: tr, Addr: net.JoinHostPort(ip.String(), strconv.Itoa(port)), Host: domain})
			if len(out) >= r.maxT {
				return out, nil
			}
		}
	}
	if len(out) == n {
		if firstErr != nil && !errors.Is(firstErr, ErrNotFound) {
			return out, firstErr
		}
		return out, fmt.Errorf("resolve: %s: %w", name, ErrNotFound)
	}
	return out, nil
}

// naptr returns the usable NAPTR records of host in order/preference order.
func (r *Resolver) naptr(ctx context.Context, host string) ([]*dns.NAPTR, error) {
	rrs, err := r.query(ctx, host, dns.TypeNAPTR)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*dns.NAPTR
	for _, rr := range rrs {
		np, ok := rr.(*dns.NAPTR)
		if !ok || !strings.EqualFold(np.Flags, "s") || naptrServices[strings.ToUpper(np.Service)] == "" || np.Replacement == "." {
			continue
		}
		out = append(out, np)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Order != out[j].Order {
			return out[i].Order < out[j].Order
		}
		return out[i].Preference < out[j].Preference
	})
	return out, nil
}

// srv returns the SRV records of name ordered by priority, and by a
// weighted random draw within one priority (RFC 2782).
func (r *Resolver) srv(ctx context.Context, name string) ([]*dns.SRV, error) {
	rrs, err := r.query(ctx, name, dns.TypeSRV)
	if err != nil {
		return nil, err
	}
	var recs []*dns.SRV
	for _, rr := range rrs {
		if s, ok := rr.(*dns.SRV); ok {
			recs = append(recs, s)
		}
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Priority < recs[j].Priority })
	var out []*dns.SRV
	for i := 0; i < len(recs); {
		j := i
		for j < len(recs) && recs[j].Priority == recs[i].Priority {
			j++
		}
		out = append(out, weighted(recs[i:j])...)
		i = j
	}
	return out, nil
}

// weighted orders records of one priority by repeated weighted draws.
func weighted(recs []*dns.SRV) []*dns.SRV {
	rest := append([]*dns.SRV(nil), recs...)
	out := make([]*dns.SRV, 0, len(rest))
	for len(rest) > 0 {
		total := 0
		for _, s := range rest {
			total += int(s.Weight)
		}
		k := 0
		if total > 0 {
			x := rand.IntN(total + 1)
			for k = 0; k < len(rest)-1; k++ {
				x -= int(rest[k].Weight)
				if x <= 0 {
					break
				}
			}
		}
		out = append(out, rest[k])
		rest = append(rest[:k], rest[k+1:]...)
	}
	return out
}
