package pua

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/puaside/puaside/internal/siplisten"
	"github.com/puaside/puaside/internal/siptls"
)

// Config is the engine's configuration (the `pua` section of the YAML file).
//
// Durations are plain time.Duration fields: the file writes them as "30s"
// or "1m30s", and package config reads a bare integer as seconds.
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
	// presentity (Request-URI, To, From) and sent to outbound_proxy if set,
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
	TLS siptls.Config `yaml:"tls"`
	// MinExpires is the smallest Expires the engine asks for.
	MinExpires time.Duration `yaml:"min_expires"`
	// DefaultExpires is the Expires asked for when a request gives none.
	// 0 means 1h.
	DefaultExpires time.Duration `yaml:"default_expires"`
	// HashSize is the number of lock shards as a power of two (Kamailio's
	// hash_size: 9 means 512), from 2 to 16; 0 means 9.
	HashSize int `yaml:"hash_size"`
	// MaxOutstanding caps the transactions waiting for a reply from the far
	// end; further work queues inside the engine (at most one entry per
	// record). While a transaction slot is free, a Publish or Remove whose
	// next hop is an IP address over UDP sends its PUBLISH on the caller's
	// goroutine instead of waking a worker. 0 means 256.
	MaxOutstanding int `yaml:"max_outstanding"`
	// UDPReadBuffer is the receive buffer (SO_RCVBUF) asked for on every UDP
	// listen socket, in bytes, so that a burst of replies waits in the
	// kernel rather than being dropped there (each lost reply costs a
	// retransmission, 500 ms later; the kernel may grant less:
	// net.core.rmem_max). 0 keeps the system default.
	UDPReadBuffer int `yaml:"udp_read_buffer"`
	// RetryMin is the base of the exponential backoff after a timeout, 408,
	// 5xx or transport error: the n-th retry waits a random time between
	// half and all of retry_min × 2^(n-1), capped at retry_max, so the
	// first retry comes after retry_min/2 to retry_min. 0 means 1s.
	RetryMin time.Duration `yaml:"retry_min"`
	// RetryMax caps that backoff (the wait is then between half and all of
	// it); it must not be below retry_min. 0 means 60s.
	RetryMax time.Duration `yaml:"retry_max"`
	// RefusedRetryMin is the base of the slow exponential backoff of a
	// refused publication or subscription (a 4xx other than 412/423, a 6xx,
	// a 2xx to PUBLISH without SIP-ETag): it is tried again after a random
	// time between half and all of refused_retry_min, then of twice as long
	// each time up to refused_retry_max, until accepted or changed by its
	// owner (a phone answering 489 while it boots gets its subscription
	// later). 0 means 30s.
	RefusedRetryMin time.Duration `yaml:"refused_retry_min"`
	// RefusedRetryMax caps that backoff; a Retry-After on a 503 is honoured
	// up to it. It must not be below refused_retry_min. 0 means 10m.
	RefusedRetryMax time.Duration `yaml:"refused_retry_max"`
	// ProbeInterval is the period of the SIP OPTIONS probe sent to the
	// presence server (outbound_proxy if set, else server_address) while it
	// looks down: after a timeout, a transport error, a 408, 502, 503 or 504
	// to a request sent there. The first reply to a probe (or to any request
	// sent there) marks it up again, and every record backing off towards
	// it is sent at once instead of waiting out its backoff. While it is
	// down, /readyz reports it. Each probe waits at most this long (and at
	// most request_timeout) for its reply. 0 means 2s.
	ProbeInterval time.Duration `yaml:"probe_interval"`
	// AuthUsername is the user name answering 401/407 digest challenges,
	// set together with auth_password.
	AuthUsername string `yaml:"auth_username"`
	// AuthPassword is the password of auth_username (masked by
	// `puaside config`).
	AuthPassword string `yaml:"auth_password"`
	// UpdatePeriod is the write-behind period of records to the store
	// (Kamailio's update_period, which defaults to 100 s): what sync_etags
	// does not write at once (subscriptions' CSeq and expiry) waits at most
	// this long. Short by default so that a crash loses at most this much
	// of it; with sync_etags off, keep it at or below the trackers'
	// flush_interval, or after a crash the trackers may know a state whose
	// publication the engine forgot. 0 means 1s.
	UpdatePeriod time.Duration `yaml:"update_period"`
	// SyncETags writes a publication to the store as soon as the server
	// grants it a new ETag, and a removal as soon as it is done, instead of
	// at the next update_period: writes are grouped (the changes of 10 ms
	// go in one transaction, one transaction at a time), so a crash loses
	// no ETag the server granted more than a few milliseconds before, and
	// leaves no orphaned publication there. With etag_journal the write
	// is an append to the journal instead of a transaction. Turn it off to
	// trade that for fewer writes.
	SyncETags bool `yaml:"sync_etags"`
	// ETagJournal is where sync_etags makes its prompt writes durable:
	// auto (the default) appends them to a journal file beside an SQLite
	// database (PATH.etags.N for db_url sqlite://PATH), which the
	// periodic write-behind (update_period) empties into the database in
	// one transaction, and which is replayed into the database at start
	// after a crash. It survives a crash of the process, as SQLite's
	// synchronous=NORMAL does. auto means off for MySQL, an in-memory
	// SQLite database and with cluster.enabled (the other instances read
	// the ETags from the database at once): then each prompt write is a
	// database transaction. off: always a transaction. Anything else is
	// the path of the journal (not with cluster.enabled). One process at a
	// time holds a journal (PATH.etags.lock). At start a journal left at
	// the auto path or at the path named here is replayed and deleted
	// whatever the setting (turned off since, it would otherwise replay
	// older states when turned on again); a journal this build cannot read
	// (a newer build's), or one whose deletion failed after the database
	// took its states (PATH.etags.stale), fails the start and is kept.
	// While appends fail (a full disk) or the journal passes 64 MiB, the
	// prompt writes go to the database, until its generations are deleted.
	ETagJournal string `yaml:"etag_journal"`
	// RequestTimeout bounds one transaction (no final reply → timeout).
	// Keep it at Timer F: a presence server that is only slow may still
	// take a PUBLISH given up earlier, under an ETag puaside never
	// learns, and that publication then lives for the Expires it asked.
	// For the same reason a request in flight when the presence server
	// comes back is not sent anew: over UDP its retransmissions (at most
	// 4 s apart) reach the server, which answers it; over TCP or TLS it
	// waits out this timeout, so after an outage shorter than it the
	// server can lag by the difference. 0 means 32s.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// InitialExpires caps the Expires asked for a publication until its
	// first ETag is written to the store: a crash before that write leaves
	// at the server a publication nobody knows, which then lives at most
	// this long. The first refresh after the write asks for the full
	// Expires. Only used with a store. 0 means 60s.
	InitialExpires time.Duration `yaml:"initial_expires"`
	// ClaimTimeout bounds the claims at start: the records loaded from the
	// store belong to their owner (usrloc, dialoginfo, bla publications, bla
	// subscriptions, by the flag column); each owner claims what it still
	// wants, and once every owner has finished, or after this long, what
	// nobody claimed is removed at the server (PUBLISH Expires: 0,
	// SUBSCRIBE Expires: 0). Records of the management API (pua.publish,
	// /v1/publish, ...) have no owner to claim them: they are kept until
	// their own lifetime ends or the API removes them. 0 means 30s.
	ClaimTimeout time.Duration `yaml:"claim_timeout"`
	// MaxPublications caps the live publications of one owner (usrloc,
	// dialoginfo, bla, the management API): a new publication past it is
	// refused, counted (puaside_tracker_events_total{tracker="pua",
	// what="publication_cap"}) and logged at most once a minute, so one
	// flooding source cannot exhaust memory or the presence server; the
	// publications already held are kept and changed as usual. 0 means
	// 500000.
	MaxPublications int `yaml:"max_publications"`
	// StopFlushTimeout bounds the final store write at stop. It has a
	// deadline of its own, so that it runs even when the stop budget was
	// spent waiting for transactions still in flight. 0 means 5s.
	StopFlushTimeout time.Duration `yaml:"stop_flush_timeout"`
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		Listen:         []string{"udp:127.0.0.1:5080", "tcp:127.0.0.1:5080"},
		MinExpires:     0,
		DefaultExpires: 3600 * time.Second,
		HashSize:       9,
		MaxOutstanding: 256,
		UDPReadBuffer:  4 << 20,
		RetryMin:       time.Second,
		RetryMax:       60 * time.Second,
		UpdatePeriod:   time.Second,
		SyncETags:      true,
		ETagJournal:    "auto",
		RequestTimeout: 32 * time.Second,

		InitialExpires:   60 * time.Second,
		ClaimTimeout:     30 * time.Second,
		StopFlushTimeout: 5 * time.Second,
		MaxPublications:  500000,
		RefusedRetryMin:  30 * time.Second,
		RefusedRetryMax:  10 * time.Minute,
		ProbeInterval:    2 * time.Second,
		TLS:              siptls.DefaultConfig(),
	}
}

// listenAddr is one parsed `listen` entry.
type listenAddr struct {
	network string // "udp", "tcp" or "tls"
	addr    string // host:port
}

// parseListen parses "udp:127.0.0.1:5080".
func parseListen(s string) (listenAddr, error) {
	netw, addr, err := siplisten.Parse(s, "udp", "tcp", "tls")
	return listenAddr{network: netw, addr: addr}, err
}

// WithDefaults returns c with the zero values documented as "0 means the
// default" replaced by the defaults. It is the only step that fills values;
// Validate never does.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	setDefault(&c.DefaultExpires, d.DefaultExpires)
	setDefault(&c.HashSize, d.HashSize)
	setDefault(&c.MaxOutstanding, d.MaxOutstanding)
	setDefault(&c.MaxPublications, d.MaxPublications)
	setDefault(&c.RetryMin, d.RetryMin)
	setDefault(&c.RetryMax, max(d.RetryMax, c.RetryMin))
	setDefault(&c.RefusedRetryMin, d.RefusedRetryMin)
	setDefault(&c.RefusedRetryMax, max(d.RefusedRetryMax, c.RefusedRetryMin))
	setDefault(&c.ProbeInterval, d.ProbeInterval)
	setDefault(&c.UpdatePeriod, d.UpdatePeriod)
	setDefault(&c.ETagJournal, d.ETagJournal)
	setDefault(&c.RequestTimeout, d.RequestTimeout)
	setDefault(&c.InitialExpires, d.InitialExpires)
	setDefault(&c.ClaimTimeout, d.ClaimTimeout)
	setDefault(&c.StopFlushTimeout, d.StopFlushTimeout)
	c.TLS = c.TLS.WithDefaults()
	return c
}

// setDefault replaces a zero *v with def.
func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Validate checks the configuration without changing it and reports every
// problem, each starting with its key ("retry_max: ...").
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(c.Listen) == 0 {
		bad("listen: at least one address is required")
	}
	needCert := false
	for i, l := range c.Listen {
		la, err := parseListen(l)
		if err != nil {
			bad("listen[%d]: %w", i, err)
			continue
		}
		needCert = needCert || la.network == "tls"
	}
	errs = append(errs, c.TLS.Validate(needCert)...)
	if c.DNSServer != "" {
		if _, _, err := net.SplitHostPort(c.DNSServer); err != nil {
			bad("dns_server: %q: want host:port: %w", c.DNSServer, err)
		}
	}
	if c.AdvertisedAddress != "" {
		h, _, err := net.SplitHostPort(c.AdvertisedAddress)
		if err != nil {
			bad("advertised_address: %q: %w", c.AdvertisedAddress, err)
		} else if siplisten.IsWildcard(h) {
			bad("advertised_address: %q: must not be a wildcard address", c.AdvertisedAddress)
		}
	} else if len(c.Listen) > 0 {
		if first, err := parseListen(c.Listen[0]); err == nil {
			if h, _, _ := net.SplitHostPort(first.addr); siplisten.IsWildcard(h) {
				bad("advertised_address: required when listening on %q", c.Listen[0])
			}
		}
	}
	for _, u := range []struct{ name, val string }{{"server_address", c.ServerAddress}, {"outbound_proxy", c.OutboundProxy}} {
		if u.val == "" {
			continue
		}
		var uri sip.Uri
		if err := sip.ParseUri(u.val, &uri); err != nil || uri.Host == "" {
			bad("%s: %q: not a SIP URI", u.name, u.val)
			continue
		}
		if tr, _ := uri.UriParams.Get("transport"); tr != "" {
			switch t := strings.ToLower(tr); {
			case t != "udp" && t != "tcp" && t != "tls":
				bad("%s: %q: transport %s not supported (udp, tcp or tls)", u.name, u.val, tr)
			case uri.Scheme == "sips" && t == "udp":
				bad("%s: %q: a sips: URI needs TLS, not UDP", u.name, u.val)
			}
		}
	}
	if c.MinExpires < 0 {
		bad("min_expires: %s: must not be negative", c.MinExpires)
	}
	if c.UDPReadBuffer < 0 {
		bad("udp_read_buffer: %d: must not be negative", c.UDPReadBuffer)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"default_expires", c.DefaultExpires}, {"retry_min", c.RetryMin}, {"retry_max", c.RetryMax},
		{"refused_retry_min", c.RefusedRetryMin}, {"refused_retry_max", c.RefusedRetryMax},
		{"probe_interval", c.ProbeInterval}, {"update_period", c.UpdatePeriod}, {"request_timeout", c.RequestTimeout},
		{"initial_expires", c.InitialExpires}, {"claim_timeout", c.ClaimTimeout}, {"stop_flush_timeout", c.StopFlushTimeout},
	} {
		if d.v <= 0 {
			bad("%s: %s: must be positive", d.name, d.v)
		}
	}
	if c.RetryMin > 0 && c.RetryMax < c.RetryMin {
		bad("retry_max: %s: must not be below retry_min (%s)", c.RetryMax, c.RetryMin)
	}
	if c.RefusedRetryMin > 0 && c.RefusedRetryMax < c.RefusedRetryMin {
		bad("refused_retry_max: %s: must not be below refused_retry_min (%s)", c.RefusedRetryMax, c.RefusedRetryMin)
	}
	if c.HashSize < 2 || c.HashSize > 16 {
		bad("hash_size: %d: must be between 2 and 16", c.HashSize)
	}
	if c.MaxOutstanding <= 0 {
		bad("max_outstanding: %d: must be positive", c.MaxOutstanding)
	}
	if c.MaxPublications < 0 {
		bad("max_publications: %d: must not be negative", c.MaxPublications)
	}
	if (c.AuthUsername == "") != (c.AuthPassword == "") {
		bad("auth_password: must be set together with auth_username")
	}
	return errors.Join(errs...)
}
