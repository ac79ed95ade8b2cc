package pa

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/puaside/puaside/internal/siplisten"
	"github.com/puaside/puaside/internal/siptls"
)

// Config is the `pa` section: the embedded presence server.
type Config struct {
	// Mode says when the presence server runs: "auto" (the default) when
	// pua.server_address is empty: the trackers and the management API
	// publish into it in process, and phones subscribe to it, so the
	// default configuration lights lamps with nothing else installed;
	// with server_address set puaside publishes upstream as before and pa
	// does not run. "on" runs it in every case: with server_address set,
	// every publication goes both upstream and into pa, which serves the
	// watchers that subscribe to puaside. "off" never runs it.
	Mode string `yaml:"mode"`
	// Listen is the presence server's own SIP listeners, "transport:host:port"
	// with transport udp, tcp, tls, ws or wss (SIP over websocket, RFC 7118,
	// for browser phones; any path is accepted). tls and wss need
	// tls.cert_file. Phones send SUBSCRIBE and PUBLISH here; the pua engine's
	// listeners (pua.listen) stay for its own dialogs.
	Listen []string `yaml:"listen"`
	// TLS is the certificate, key and CA bundle of the tls: and wss:
	// listeners (the keys of pua.tls; reloaded when the files change).
	TLS siptls.Config `yaml:"tls"`
	// WebSocket bounds what one ws:/wss: client may cost.
	WebSocket WebSocketConfig `yaml:"websocket"`
	// AdvertisedAddress is the host:port put in Contact and Via of NOTIFYs;
	// empty means the first listen address with the port actually bound. It
	// is required when that address is a wildcard.
	AdvertisedAddress string `yaml:"advertised_address"`
	// MinExpires is the shortest subscription or publication accepted: a
	// shorter non-zero Expires gets 423 with Min-Expires (Kamailio
	// presence's min_expires). 0 means 60s.
	MinExpires time.Duration `yaml:"min_expires"`
	// DefaultExpires is granted when a SUBSCRIBE or PUBLISH has no Expires.
	// 0 means 3600s.
	DefaultExpires time.Duration `yaml:"default_expires"`
	// MaxExpires caps the Expires granted (a longer one is lowered to it).
	// 0 means 3600s.
	MaxExpires time.Duration `yaml:"max_expires"`
	// RetryMin is the first wait before a NOTIFY that timed out or was
	// answered 408 or 5xx is sent again; each further retry waits twice as
	// long, up to retry_max. 0 means 1s.
	RetryMin time.Duration `yaml:"retry_min"`
	// RetryMax caps that backoff. 0 means 30s.
	RetryMax time.Duration `yaml:"retry_max"`
	// MaxRetries is how many failed NOTIFYs in a row end a subscription
	// (a 481 ends it at once). 0 means 8.
	MaxRetries int `yaml:"max_retries"`
	// RequestTimeout bounds one NOTIFY transaction. 0 means 8s.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// MaxBodySize is the largest PUBLISH body accepted (413 above). 0 means
	// 64 KiB.
	MaxBodySize int `yaml:"max_body_size"`
	// Policy decides which watchers may subscribe: policy.default, then
	// policy.rules (presentity, watcher, action).
	Policy Policy `yaml:"policy"`
	// ClusterSyncPeriod is, with cluster.enabled, how often the presence
	// server reads the subscriptions and PUBLISHes the other instances
	// accepted from the database's change log (the owner of a presentity's
	// shard notifies within it of a SUBSCRIBE made at another instance).
	// Unused by a single instance. 0 means 200ms; at least 10ms.
	ClusterSyncPeriod time.Duration `yaml:"cluster_sync_period"`
}

// MinClusterSyncPeriod is the shortest cluster_sync_period: each period
// reads the change log once.
const MinClusterSyncPeriod = 10 * time.Millisecond

// Policy is the authorization of watchers (RFC 3857 §3.2's subscription
// authorization). The rules kept in the database (managed through the
// management API, most specific first: a presentity AoR, then a domain,
// then any; the same for the watcher) are checked first, then these rules
// in order, then the default. A watcher is named by its AoR
// ("alice@example.com") or domain ("example.com").
type Policy struct {
	// Default is what happens to watchers no rule names: "local" (the
	// default) allows watchers of the presentity's own domain and holds
	// others pending; "allow" allows all; "pending" holds all pending;
	// "deny" rejects all with 403.
	Default string `yaml:"default"`
	// Rules are checked in order, the first matching one wins.
	Rules []Rule `yaml:"rules"`
}

// Rule is one authorization rule.
type Rule struct {
	// Presentity is an AoR or a domain the rule applies to; empty is every
	// presentity.
	Presentity string `yaml:"presentity"`
	// Watcher is an AoR or a domain; empty is every watcher.
	Watcher string `yaml:"watcher"`
	// Action is allow, pending or deny.
	Action string `yaml:"action"`
}

// WebSocketConfig bounds the ws: and wss: listeners. A client beyond a
// bound is disconnected and counted in
// puaside_pa_websocket_dropped_total{reason}.
type WebSocketConfig struct {
	// HandshakeTimeout bounds the TLS handshake (wss) and the HTTP upgrade
	// request of a new connection. 0 means 10s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// MaxPendingHandshakes bounds the connections in their handshake at
	// once; more are closed at once. 0 means 256.
	MaxPendingHandshakes int `yaml:"max_pending_handshakes"`
	// MaxFrameSize is the largest text frame (one SIP message) accepted,
	// at most 32768 (what sipgo's reader takes in one message).
	// 0 means 32768.
	MaxFrameSize int `yaml:"max_frame_size"`
	// MaxFramesPerSecond is the rate of frames one connection may send
	// (with a burst as large: a browser subscribing to a long buddy list
	// sends a SUBSCRIBE and a 200 for each buddy at once); 0 means 1000.
	MaxFramesPerSecond int `yaml:"max_frames_per_second"`
}

// maxWSFrame is the largest SIP message sipgo's WebSocket reader reads
// whole (sip.TransportBufferReadSize).
const maxWSFrame = 32768

// DefaultConfig returns the defaults: on, UDP and TCP on 127.0.0.1:5065.
func DefaultConfig() Config {
	return Config{
		Mode:   "auto",
		Listen: []string{"udp:127.0.0.1:5065", "tcp:127.0.0.1:5065"},
		TLS:    siptls.DefaultConfig(),
		WebSocket: WebSocketConfig{HandshakeTimeout: 10 * time.Second, MaxPendingHandshakes: 256,
			MaxFrameSize: maxWSFrame, MaxFramesPerSecond: 1000},
		MinExpires:     60 * time.Second,
		DefaultExpires: 3600 * time.Second,
		MaxExpires:     3600 * time.Second,
		RetryMin:       time.Second,
		RetryMax:       30 * time.Second,
		MaxRetries:     8,
		RequestTimeout: 8 * time.Second,
		MaxBodySize:    64 << 10,
		Policy:         Policy{Default: "local", Rules: []Rule{}},

		ClusterSyncPeriod: 200 * time.Millisecond,
	}
}

// WithDefaults returns c with the zero values documented as "0 means the
// default" replaced by the defaults.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	if c.MinExpires == 0 {
		c.MinExpires = d.MinExpires
	}
	if c.DefaultExpires == 0 {
		c.DefaultExpires = d.DefaultExpires
	}
	if c.MaxExpires == 0 {
		c.MaxExpires = d.MaxExpires
	}
	if c.RetryMin == 0 {
		c.RetryMin = d.RetryMin
	}
	if c.RetryMax == 0 {
		c.RetryMax = d.RetryMax
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = d.MaxRetries
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = d.RequestTimeout
	}
	if c.MaxBodySize == 0 {
		c.MaxBodySize = d.MaxBodySize
	}
	if c.ClusterSyncPeriod == 0 {
		c.ClusterSyncPeriod = d.ClusterSyncPeriod
	}
	if c.Mode == "" {
		c.Mode = d.Mode
	}
	if c.Policy.Default == "" {
		c.Policy.Default = d.Policy.Default
	}
	c.TLS = c.TLS.WithDefaults()
	if c.WebSocket.HandshakeTimeout == 0 {
		c.WebSocket.HandshakeTimeout = d.WebSocket.HandshakeTimeout
	}
	if c.WebSocket.MaxPendingHandshakes == 0 {
		c.WebSocket.MaxPendingHandshakes = d.WebSocket.MaxPendingHandshakes
	}
	if c.WebSocket.MaxFrameSize == 0 {
		c.WebSocket.MaxFrameSize = d.WebSocket.MaxFrameSize
	}
	if c.WebSocket.MaxFramesPerSecond == 0 {
		c.WebSocket.MaxFramesPerSecond = d.WebSocket.MaxFramesPerSecond
	}
	return c
}

// listenAddr is one parsed listen entry.
type listenAddr struct {
	network string // "udp", "tcp", "tls", "ws" or "wss"
	addr    string // host:port
}

func parseListen(s string) (listenAddr, error) {
	netw, addr, err := siplisten.Parse(s, "udp", "tcp", "tls", "ws", "wss")
	return listenAddr{network: netw, addr: addr}, err
}

// Active reports whether the presence server runs, given
// pua.server_address.
func (c Config) Active(serverAddress string) bool {
	switch c.Mode {
	case "on":
		return true
	case "off":
		return false
	}
	return serverAddress == ""
}

// Validate checks c without changing it.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch c.Mode {
	case "", "auto", "on", "off":
	default:
		bad("mode: %q is not one of auto, on, off", c.Mode)
	}
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
		needCert = needCert || la.network == "tls" || la.network == "wss"
		if h, _, _ := net.SplitHostPort(la.addr); i == 0 && c.AdvertisedAddress == "" && siplisten.IsWildcard(h) {
			bad("advertised_address: required when listening on %q", l)
		}
	}
	if c.AdvertisedAddress != "" {
		if _, _, err := net.SplitHostPort(c.AdvertisedAddress); err != nil {
			bad("advertised_address: %q: %w", c.AdvertisedAddress, err)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"min_expires", c.MinExpires}, {"default_expires", c.DefaultExpires}, {"max_expires", c.MaxExpires},
		{"retry_min", c.RetryMin}, {"retry_max", c.RetryMax}, {"request_timeout", c.RequestTimeout},
		{"cluster_sync_period", c.ClusterSyncPeriod}} {
		if d.v < 0 {
			bad("%s: must not be negative", d.name)
		}
	}
	errs = append(errs, c.TLS.Validate(needCert)...)
	ws := c.WebSocket
	if ws.HandshakeTimeout < 0 {
		bad("websocket.handshake_timeout: must not be negative")
	}
	if ws.MaxPendingHandshakes < 0 {
		bad("websocket.max_pending_handshakes: must not be negative")
	}
	if ws.MaxFrameSize < 0 || ws.MaxFrameSize > maxWSFrame {
		bad("websocket.max_frame_size: %d: must be between 0 and %d", ws.MaxFrameSize, maxWSFrame)
	}
	if ws.MaxFramesPerSecond < 0 {
		bad("websocket.max_frames_per_second: must not be negative")
	}
	if c.MaxExpires > 0 && c.MinExpires > c.MaxExpires {
		bad("min_expires: %s is above max_expires %s", c.MinExpires, c.MaxExpires)
	}
	if c.MaxExpires > 0 && c.DefaultExpires > c.MaxExpires {
		bad("default_expires: %s is above max_expires %s", c.DefaultExpires, c.MaxExpires)
	}
	if c.RetryMax > 0 && c.RetryMax < c.RetryMin {
		bad("retry_max: %s is below retry_min %s", c.RetryMax, c.RetryMin)
	}
	if c.ClusterSyncPeriod > 0 && c.ClusterSyncPeriod < MinClusterSyncPeriod {
		bad("cluster_sync_period: %s is below %s", c.ClusterSyncPeriod, MinClusterSyncPeriod)
	}
	if c.MaxRetries < 0 {
		bad("max_retries: must not be negative")
	}
	if c.MaxBodySize < 0 {
		bad("max_body_size: must not be negative")
	}
	switch c.Policy.Default {
	case "", "local", "allow", "pending", "deny":
	default:
		bad("policy.default: %q is not one of local, allow, pending, deny", c.Policy.Default)
	}
	for i, r := range c.Policy.Rules {
		switch r.Action {
		case "allow", "pending", "deny":
		default:
			bad("policy.rules[%d].action: %q is not one of allow, pending, deny", i, r.Action)
		}
	}
	return errors.Join(errs...)
}
