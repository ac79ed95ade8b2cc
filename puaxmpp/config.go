package puaxmpp

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"mellium.im/xmpp/jid"
)

// Config is the xmpp section of the YAML configuration. The key names are
// those of Kamailio's xmpp and pua_xmpp modules where they have one.
type Config struct {
	// Enabled turns the gateway on. Off by default.
	Enabled bool `yaml:"enabled"`
	// XMPPDomain is the component's domain at the XMPP server (Kamailio's
	// xmpp_domain): the domain under which XMPP users see SIP users, and the
	// name of the Component section in the XMPP server's configuration.
	XMPPDomain string `yaml:"xmpp_domain"`
	// GatewayDomain is the SIP domain under which SIP users see XMPP users
	// with domain_separator (Kamailio's gateway_domain):
	// sip:user<sep>jabberhost@gateway_domain. Unused without a separator.
	GatewayDomain string `yaml:"gateway_domain"`
	// XMPPHost is the XMPP server's address for components (Kamailio's
	// xmpp_host).
	XMPPHost string `yaml:"xmpp_host"`
	// XMPPPort is the XMPP server's component port (Kamailio's xmpp_port;
	// prosody's component_ports).
	XMPPPort int `yaml:"xmpp_port"`
	// XMPPPassword is the component secret (Kamailio's xmpp_password;
	// prosody's component_secret).
	XMPPPassword string `yaml:"xmpp_password"`
	// DomainSeparator is the character of Kamailio's address encoding
	// (its default is "*", its README suggests "%"): a SIP user
	// alice@sip.example.com is alice<sep>sip.example.com@xmpp_domain for
	// XMPP, an XMPP user bob@jabber.org is
	// sip:bob<sep>jabber.org@gateway_domain for SIP. Empty (the default)
	// maps addresses one to one (RFC 7247).
	DomainSeparator string `yaml:"domain_separator"`
	// GWMap maps SIP domains to XMPP domains one to one (Kamailio's gwmap,
	// "sipdom=xmppdom"): a SIP user of a mapped SIP domain is seen by XMPP
	// users in the mapped XMPP domain, an XMPP user of a mapped XMPP domain
	// is seen by SIP users in the SIP domain. Unmapped domains are the same
	// on both sides. SIP users are reachable only in xmpp_domain.
	GWMap map[string]string `yaml:"gwmap"`
	// DefaultExpires is the Expires asked on the gateway's PUBLISHes and
	// SUBSCRIBEs (refreshed before it runs out).
	DefaultExpires time.Duration `yaml:"default_expires"`
	// ClosedLinger is how long the closed state of an XMPP user whose last
	// resource went offline stays published before it is left to expire.
	ClosedLinger time.Duration `yaml:"closed_linger"`
	// WatchWinfo subscribes to presence.winfo of every XMPP user the
	// gateway knows at the presence server, so that a SIP watcher of that
	// user becomes an XMPP subscription request (pua_xmpp's way). It
	// applies only without the presence server in process: when pa runs
	// (pa.mode auto with pua.server_address empty, or on), pa tells the
	// gateway of the SIP watchers that subscribe to it, and no winfo
	// subscription is made upstream, whatever this key says.
	WatchWinfo bool `yaml:"watch_winfo"`
	// ReconnectMin is the first wait before connecting to the XMPP server
	// again; each failed attempt doubles it (with jitter).
	ReconnectMin time.Duration `yaml:"reconnect_min"`
	// ReconnectMax is the longest wait between two connection attempts.
	ReconnectMax time.Duration `yaml:"reconnect_max"`
	// MaxStanzaSize bounds one stanza from the XMPP server in bytes; a
	// larger one closes the connection (logged, counted, reconnected).
	MaxStanzaSize int `yaml:"max_stanza_size"`
	// MaxStanzaDepth bounds the nesting of a presence stanza; a deeper one
	// is ignored (logged and counted).
	MaxStanzaDepth int `yaml:"max_stanza_depth"`
	// MaxResources bounds the resources kept per Jabber user.
	MaxResources int `yaml:"max_resources"`
	// MaxUsers bounds the Jabber users whose presence the gateway holds.
	MaxUsers int `yaml:"max_users"`
}

// DefaultConfig returns the defaults (the gateway off; prosody's and
// Kamailio's component port 5347).
func DefaultConfig() Config {
	return Config{
		XMPPDomain:     "sip.xmpp.localhost",
		XMPPHost:       "127.0.0.1",
		XMPPPort:       5347,
		DefaultExpires: time.Hour,
		ClosedLinger:   time.Minute,
		WatchWinfo:     true,
		ReconnectMin:   500 * time.Millisecond,
		ReconnectMax:   30 * time.Second,
		MaxStanzaSize:  64 << 10,
		MaxStanzaDepth: 16,
		MaxResources:   16,
		MaxUsers:       100000,
		GWMap:          map[string]string{},
	}
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("puaxmpp: invalid config")

// Validate checks the configuration without changing it and reports every
// problem, each starting with its key. A disabled section is checked too.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, err := jid.Parse(c.XMPPDomain); err != nil || c.XMPPDomain == "" || strings.ContainsAny(c.XMPPDomain, "@/") {
		bad("xmpp_domain: %q is not a domain", c.XMPPDomain)
	}
	if c.DomainSeparator != "" {
		if len(c.DomainSeparator) != 1 || strings.ContainsAny(c.DomainSeparator, "@:/<>\"' ;?") {
			bad("domain_separator: %q must be one character other than @ : / < > \" ' ; ? and space", c.DomainSeparator)
		}
		if c.GatewayDomain == "" {
			bad("gateway_domain: needed with domain_separator")
		}
	}
	if c.Enabled && c.XMPPHost == "" {
		bad("xmpp_host: empty")
	}
	if c.XMPPPort <= 0 || c.XMPPPort > 65535 {
		bad("xmpp_port: %d is not a port", c.XMPPPort)
	}
	if c.Enabled && c.XMPPPassword == "" {
		bad("xmpp_password: empty (the component secret is required)")
	}
	if _, err := newDomainMap(c.XMPPDomain, c.GWMap); err != nil {
		bad("gwmap: %v", err)
	}
	if c.DefaultExpires < time.Minute {
		bad("default_expires: %s is shorter than 1m", c.DefaultExpires)
	}
	if c.ClosedLinger < 0 {
		bad("closed_linger: negative")
	}
	if c.ReconnectMin <= 0 || c.ReconnectMax < c.ReconnectMin {
		bad("reconnect_max: want 0 < reconnect_min <= reconnect_max, have %s, %s", c.ReconnectMin, c.ReconnectMax)
	}
	if c.MaxStanzaSize < 4096 {
		bad("max_stanza_size: %d is less than 4096", c.MaxStanzaSize)
	}
	if c.MaxStanzaDepth < 4 {
		bad("max_stanza_depth: %d is less than 4", c.MaxStanzaDepth)
	}
	if c.MaxResources < 1 {
		bad("max_resources: %d is less than 1", c.MaxResources)
	}
	if c.MaxUsers < 1 {
		bad("max_users: %d is less than 1", c.MaxUsers)
	}
	if len(errs) == 0 {
		return nil
	}
	return configError{errors.Join(errs...)}
}

// configError is a Validate error: its text is the problems found, one a
// line, and it matches ErrConfig.
type configError struct{ err error }

func (e configError) Error() string   { return e.err.Error() }
func (e configError) Unwrap() []error { return []error{ErrConfig, e.err} }
