package pua

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Config is the engine's configuration (the `pua` section of the YAML file).
//
// Durations are plain time.Duration fields: gopkg.in/yaml.v3 decodes a
// duration string such as "30s" or "1m30s" into a time.Duration natively and
// rejects a bare integer, so no wrapper type is needed.
type Config struct {
	// Listen lists the SIP sockets as "transport:host:port" (udp, tcp or
	// tls; tls needs tls.cert_file and tls.key_file). They receive replies
	// to our requests and NOTIFYs; UDP requests are sent from the first UDP
	// socket (TCP and TLS ones from an ephemeral port, as TCP clients do).
	Listen []string `yaml:"listen"`
	// AdvertisedAddress is the host:port put in Via and Contact. Empty means
	// the first listen address (with the port actually bound); it is required
	// when that address is a wildcard (0.0.0.0 or ::).
	AdvertisedAddress string `yaml:"advertised_address"`
	// ServerAddress is the presence server's SIP URI (e.g. sip:127.0.0.1:5060,
	// sips:presence.example.com). A host name is resolved as RFC 3263 says
	// (NAPTR, SRV, A/AAAA, with their TTLs); a request that times out, fails
	// to connect or gets a 503 is sent to the next target found. A sips: URI
	// or ;transport=tls is sent over TLS only.
	// PUBLISHes, and SUBSCRIBEs to a presentity, are addressed to the
	// presentity (Request-URI, To, From) and sent to OutboundProxy if set,
	// else to this address, else resolved from the presentity URI.
	// SUBSCRIBEs to a phone (BLA) go to the phone's contact.
	ServerAddress string `yaml:"server_address"`
	// OutboundProxy is the SIP URI of the next hop for every request, unless a
	// request names its own.
	OutboundProxy string `yaml:"outbound_proxy"`
	// DNSServer is the "host:port" of the DNS server asked for the NAPTR,
	// SRV and A/AAAA records of destinations given as names; empty means the
	// first nameserver of /etc/resolv.conf. When it gives no answer, the
	// name is resolved by the system (A/AAAA, /etc/hosts).
	DNSServer string `yaml:"dns_server"`
	// TLS configures SIP over TLS.
	TLS TLSConfig `yaml:"tls"`
	// MinExpires is the smallest Expires the engine asks for.
	MinExpires time.Duration `yaml:"min_expires"`
	// DefaultExpires is the Expires asked for when a request gives none.
	DefaultExpires time.Duration `yaml:"default_expires"`
	// HashSize is the number of lock shards as a power of two (Kamailio's
	// hash_size: 9 means 512); values below 2 mean 9.
	HashSize int `yaml:"hash_size"`
	// MaxOutstanding caps the transactions waiting for a reply from the far
	// end; further work queues inside the engine (at most one entry per record).
	MaxOutstanding int `yaml:"max_outstanding"`
	// RetryMin and RetryMax bound the exponential backoff after a timeout,
	// 408, 5xx or transport error.
	RetryMin time.Duration `yaml:"retry_min"`
	RetryMax time.Duration `yaml:"retry_max"`
	// RefusedRetryMin and RefusedRetryMax bound the slow exponential
	// backoff of a refused publication or subscription (a 4xx other than
	// 412/423, a 6xx, a 2xx to PUBLISH without SIP-ETag): it is tried again
	// after refused_retry_min, then twice as long each time up to
	// refused_retry_max, until accepted or changed by its owner (a phone
	// answering 489 while it boots gets its subscription later). A
	// Retry-After on a 503 is honoured up to refused_retry_max.
	RefusedRetryMin time.Duration `yaml:"refused_retry_min"`
	RefusedRetryMax time.Duration `yaml:"refused_retry_max"`
	// ProbeInterval is the period of the SIP OPTIONS probe sent to the
	// presence server (outbound_proxy if set, else server_address) while it
	// looks down: after a timeout, a transport error, a 408, 502, 503 or 504
	// to a request sent there. The first reply to a probe (or to any request
	// sent there) marks it up again, and every record backing off towards
	// it is sent at once instead of waiting out its backoff. While it is
	// down, /readyz reports it. Each probe waits at most this long (and at
	// most request_timeout) for its reply.
	ProbeInterval time.Duration `yaml:"probe_interval"`
	// AuthUsername and AuthPassword answer 401/407 digest challenges.
	AuthUsername string `yaml:"auth_username"`
	AuthPassword string `yaml:"auth_password"`
	// UpdatePeriod is the write-behind period of records to the store
	// (Kamailio's update_period, which defaults to 100 s): what sync_etags
	// does not write at once (subscriptions' CSeq and expiry) waits at most
	// this long. Short by default so that a crash loses at most this much
	// of it; with sync_etags off, keep it at or below the trackers'
	// flush_interval, or after a crash the trackers may know a state whose
	// publication the engine forgot.
	UpdatePeriod time.Duration `yaml:"update_period"`
	// SyncETags writes a publication to the store as soon as the server
	// grants it a new ETag, and a removal as soon as it is done, instead of
	// at the next update_period: writes are grouped (the changes of 10 ms
	// go in one transaction, one transaction at a time), so a crash loses
	// no ETag the server granted more than a few milliseconds before, and
	// leaves no orphaned publication there. Turn it off to trade that for
	// fewer database writes.
	SyncETags bool `yaml:"sync_etags"`
	// RequestTimeout bounds one transaction (no final reply → timeout).
	RequestTimeout time.Duration `yaml:"request_timeout"`
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		Listen:         []string{"udp:127.0.0.1:5080", "tcp:127.0.0.1:5080"},
		MinExpires:     0,
		DefaultExpires: 3600 * time.Second,
		HashSize:       9,
		MaxOutstanding: 256,
		RetryMin:       time.Second,
		RetryMax:       60 * time.Second,
		UpdatePeriod:   time.Second,
		SyncETags:      true,
		RequestTimeout: 32 * time.Second,

		RefusedRetryMin: 30 * time.Second,
		RefusedRetryMax: 10 * time.Minute,
		ProbeInterval:   2 * time.Second,
		TLS:             DefaultTLSConfig(),
	}
}

// listenAddr is one parsed `listen` entry.
type listenAddr struct {
	network string // "udp", "tcp" or "tls"
	addr    string // host:port
}

// parseListen parses "udp:127.0.0.1:5080".
func parseListen(s string) (listenAddr, error) {
	netw, addr, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return listenAddr{}, fmt.Errorf("pua: listen %q: want transport:host:port", s)
	}
	netw = strings.ToLower(netw)
	if netw != "udp" && netw != "tcp" && netw != "tls" {
		return listenAddr{}, fmt.Errorf("pua: listen %q: transport must be udp, tcp or tls", s)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return listenAddr{}, fmt.Errorf("pua: listen %q: %w", s, err)
	}
	return listenAddr{network: netw, addr: addr}, nil
}

// isWildcard reports whether host is empty or an unspecified address.
func isWildcard(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// Validate checks the configuration and fills zero values with defaults.
func (c *Config) Validate() error {
	d := DefaultConfig()
	if len(c.Listen) == 0 {
		return fmt.Errorf("pua: listen: at least one address is required")
	}
	needCert := false
	for _, l := range c.Listen {
		la, err := parseListen(l)
		if err != nil {
			return err
		}
		needCert = needCert || la.network == "tls"
	}
	if err := c.TLS.validate(needCert); err != nil {
		return err
	}
	if c.DNSServer != "" {
		if _, _, err := net.SplitHostPort(c.DNSServer); err != nil {
			return fmt.Errorf("pua: dns_server %q: want host:port: %w", c.DNSServer, err)
		}
	}
	if c.AdvertisedAddress != "" {
		h, _, err := net.SplitHostPort(c.AdvertisedAddress)
		if err != nil {
			return fmt.Errorf("pua: advertised_address %q: %w", c.AdvertisedAddress, err)
		}
		if isWildcard(h) {
			return fmt.Errorf("pua: advertised_address %q: must not be a wildcard address", c.AdvertisedAddress)
		}
	} else {
		first, _ := parseListen(c.Listen[0])
		h, _, _ := net.SplitHostPort(first.addr)
		if isWildcard(h) {
			return fmt.Errorf("pua: advertised_address is required when listening on %q", c.Listen[0])
		}
	}
	for name, u := range map[string]string{"server_address": c.ServerAddress, "outbound_proxy": c.OutboundProxy} {
		if u == "" {
			continue
		}
		var uri sip.Uri
		if err := sip.ParseUri(u, &uri); err != nil || uri.Host == "" {
			return fmt.Errorf("pua: %s %q: not a SIP URI", name, u)
		}
		if tr, _ := uri.UriParams.Get("transport"); tr != "" {
			switch t := strings.ToLower(tr); {
			case t != "udp" && t != "tcp" && t != "tls":
				return fmt.Errorf("pua: %s %q: transport %s not supported (udp, tcp or tls)", name, u, tr)
			case uri.Scheme == "sips" && t == "udp":
				return fmt.Errorf("pua: %s %q: a sips: URI needs TLS, not UDP", name, u)
			}
		}
	}
	if c.MinExpires < 0 {
		c.MinExpires = 0
	}
	if c.DefaultExpires <= 0 {
		c.DefaultExpires = d.DefaultExpires
	}
	if c.HashSize < 2 || c.HashSize > 16 {
		c.HashSize = d.HashSize
	}
	if c.MaxOutstanding <= 0 {
		c.MaxOutstanding = d.MaxOutstanding
	}
	if c.RetryMin <= 0 {
		c.RetryMin = d.RetryMin
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = max(d.RetryMax, c.RetryMin)
	}
	if c.RefusedRetryMin <= 0 {
		c.RefusedRetryMin = d.RefusedRetryMin
	}
	if c.RefusedRetryMax < c.RefusedRetryMin {
		c.RefusedRetryMax = max(d.RefusedRetryMax, c.RefusedRetryMin)
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = d.ProbeInterval
	}
	if c.UpdatePeriod <= 0 {
		c.UpdatePeriod = d.UpdatePeriod
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = d.RequestTimeout
	}
	if (c.AuthUsername == "") != (c.AuthPassword == "") {
		return fmt.Errorf("pua: auth_username and auth_password must be set together")
	}
	return nil
}
