package resolve

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// query returns the records of type qt for name, following CNAMEs (at most
// maxCNAME, loops refused) and using the cache. A name without such
// records gives ErrNotFound.
func (r *Resolver) query(ctx context.Context, name string, qt uint16) ([]dns.RR, error) {
	name = dns.Fqdn(strings.ToLower(name))
	seen := map[string]bool{}
	for hop := 0; hop <= maxCNAME; hop++ {
		if seen[name] {
			return nil, fmt.Errorf("resolve: %s %s: CNAME loop at %s", strings.TrimSuffix(name, "."), dns.TypeToString[qt], name)
		}
		seen[name] = true
		rrs, ok := r.cached(name, qt)
		if !ok {
			var err error
			rrs, err = r.exchange(ctx, name, qt)
			if err != nil {
				return nil, err
			}
		}
		if rrs == nil {
			return nil, fmt.Errorf("resolve: %s %s: %w", strings.TrimSuffix(name, "."), dns.TypeToString[qt], ErrNotFound)
		}
		// The answer either holds the records, or a CNAME to follow.
		var out []dns.RR
		target := ""
		for _, rr := range rrs {
			if rr.Header().Rrtype == qt {
				out = append(out, rr)
			} else if c, ok := rr.(*dns.CNAME); ok {
				target = strings.ToLower(c.Target)
			}
		}
		if len(out) > 0 {
			return out, nil
		}
		if target == "" {
			return nil, fmt.Errorf("resolve: %s %s: %w", strings.TrimSuffix(name, "."), dns.TypeToString[qt], ErrNotFound)
		}
		name = target
	}
	return nil, fmt.Errorf("resolve: %s: CNAME chain longer than %d", strings.TrimSuffix(name, "."), maxCNAME)
}

// cached returns the cached records of (name, qt); ok is false on a miss.
// A cached negative answer returns nil records and ok.
func (r *Resolver) cached(name string, qt uint16) ([]dns.RR, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.cache[cacheKey{name, qt}]
	if !ok {
		return nil, false
	}
	if !r.now().Before(e.expires) {
		delete(r.cache, cacheKey{name, qt})
		return nil, false
	}
	return e.rrs, true
}

// store caches rrs (nil: a negative answer) for ttl.
func (r *Resolver) store(name string, qt uint16, rrs []dns.RR, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if len(r.cache) >= maxCacheEntries {
		for k, e := range r.cache {
			if !now.Before(e.expires) {
				delete(r.cache, k)
			}
		}
		if len(r.cache) >= maxCacheEntries {
			clear(r.cache)
		}
	}
	r.cache[cacheKey{name, qt}] = cacheEntry{rrs: rrs, expires: now.Add(ttl)}
}

// exchange asks the server for (name, qt), over TCP when the UDP answer is
// truncated, and caches the answer: the records relevant to name (its own
// records and its CNAME) for their smallest TTL, a negative answer for
// the SOA minimum.
func (r *Resolver) exchange(ctx context.Context, name string, qt uint16) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qt)
	m.RecursionDesired = true
	m.SetEdns0(dns.DefaultMsgSize, false)
	qs := strings.TrimSuffix(name, ".") + " " + dns.TypeToString[qt]
	r.mu.Lock()
	down := r.now().Before(r.downUntil)
	r.mu.Unlock()
	if down {
		return nil, fmt.Errorf("resolve: %s: DNS server %s did not answer a moment ago", qs, r.server)
	}
	in, _, err := r.client.ExchangeContext(ctx, m, r.server)
	if err == nil && in.Truncated {
		tcp := *r.client
		tcp.Net = "tcp"
		in, _, err = tcp.ExchangeContext(ctx, m, r.server)
	}
	if err != nil {
		if ctx.Err() == nil {
			// Do not make every request wait for a server that is not there.
			r.mu.Lock()
			r.downUntil = r.now().Add(serverDownFor)
			r.mu.Unlock()
		}
		return nil, fmt.Errorf("resolve: %s: asking %s: %w", qs, r.server, err)
	}
	switch in.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		r.store(name, qt, nil, negativeTTL(in))
		return nil, nil
	default:
		return nil, fmt.Errorf("resolve: %s: server %s answered %s", qs, r.server, dns.RcodeToString[in.Rcode])
	}
	if len(in.Answer) > maxRecords {
		return nil, fmt.Errorf("resolve: %s: answer has %d records, more than the %d accepted", qs, len(in.Answer), maxRecords)
	}
	var rrs []dns.RR
	var ttl uint32
	for _, rr := range in.Answer {
		h := rr.Header()
		if !strings.EqualFold(h.Name, name) || (h.Rrtype != qt && h.Rrtype != dns.TypeCNAME) {
			continue
		}
		if len(rrs) == 0 || h.Ttl < ttl {
			ttl = h.Ttl
		}
		rrs = append(rrs, rr)
	}
	if len(rrs) == 0 {
		r.store(name, qt, nil, negativeTTL(in))
		return nil, nil
	}
	r.store(name, qt, rrs, time.Duration(ttl)*time.Second)
	return rrs, nil
}

// negativeTTL is how long a negative answer is cached (RFC 2308: the SOA
// minimum, bounded by the SOA's own TTL), capped at maxNegativeTTL.
func negativeTTL(in *dns.Msg) time.Duration {
	for _, rr := range in.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			t := min(soa.Minttl, soa.Hdr.Ttl)
			return min(time.Duration(t)*time.Second, maxNegativeTTL)
		}
	}
	return defaultNegativeTTL
}
