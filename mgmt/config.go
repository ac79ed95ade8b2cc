package mgmt

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/puaside/puaside/internal/trusted"
)

// Defaults of the management interface.
const (
	DefaultHTTPListen  = "127.0.0.1:8080"
	DefaultMaxBody     = 1 << 20
	DefaultWaitTimeout = 40 * time.Second
)

// Config configures the management HTTP server (the `mgmt` section of the
// configuration file).
type Config struct {
	// HTTPListen is the host:port the API, /metrics and the JSON event input
	// listen on. It binds to loopback by default; an address other than
	// loopback (a wildcard such as 0.0.0.0:8080 included) is refused at start
	// unless a token is set or allow_insecure is true.
	HTTPListen string `yaml:"http_listen"`
	// Token is the bearer token: when set, "Authorization: Bearer <token>"
	// is required on every endpoint of http_listen except /healthz.
	Token string `yaml:"token"`
	// AllowInsecure lets http_listen be an address other than loopback
	// without a token, e.g. inside a container whose port is published on
	// the host's loopback only. The control endpoints still answer only to
	// trusted_sources.
	AllowInsecure bool `yaml:"allow_insecure"`
	// TrustedSources are the CIDRs (or single addresses) allowed to call the
	// control endpoints: POST /v1/publish, /v1/subscribe and /RPC, and every
	// PUT and DELETE. Others get 403, whatever their token. Listings,
	// /metrics and the health checks are not restricted (the token guards
	// them); POST /v1/events follows ingest.trusted_sources. An empty list
	// closes the control endpoints to everyone.
	TrustedSources []string `yaml:"trusted_sources"`
	// MetricsListen is a further host:port serving only /metrics, /healthz
	// and /readyz, without the token (and with TLS when tls_cert is set): a
	// Prometheus scraper can reach it without reaching the control
	// endpoints. /metrics stays on http_listen too. Empty means no such
	// listener.
	MetricsListen string `yaml:"metrics_listen"`
	// TLSCert is the PEM certificate file; with tls_key set too, the
	// server speaks HTTPS.
	TLSCert string `yaml:"tls_cert"`
	// TLSKey is the PEM private key file of tls_cert.
	TLSKey string `yaml:"tls_key"`
	// MaxBody is the largest request body accepted, in bytes; larger bodies
	// get 413.
	MaxBody int64 `yaml:"max_body"`
	// WaitTimeout bounds how long a publish or subscribe request waits for
	// the final SIP reply before answering 504.
	WaitTimeout time.Duration `yaml:"wait_timeout"`
}

// DefaultConfig returns the configuration used when the file says nothing.
func DefaultConfig() Config {
	return Config{
		HTTPListen:     DefaultHTTPListen,
		TrustedSources: []string{"127.0.0.0/8", "::1/128"},
		MaxBody:        DefaultMaxBody,
		WaitTimeout:    DefaultWaitTimeout,
	}
}

// Validate checks the configuration without changing it and reports every
// problem, each starting with its key ("http_listen: ...").
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.HTTPListen == "" {
		bad("http_listen: must not be empty")
	} else if host, _, err := net.SplitHostPort(c.HTTPListen); err != nil {
		bad("http_listen: %q: %w", c.HTTPListen, err)
	} else if !isLoopbackHost(host) && c.Token == "" && !c.AllowInsecure {
		bad("http_listen: %q is not a loopback address: set token (or allow_insecure: true to serve the API there without one)", c.HTTPListen)
	}
	if c.MetricsListen != "" {
		if _, port, err := net.SplitHostPort(c.MetricsListen); err != nil {
			bad("metrics_listen: %q: %w", c.MetricsListen, err)
		} else if c.MetricsListen == c.HTTPListen && port != "0" {
			bad("metrics_listen: %q: must differ from http_listen", c.MetricsListen)
		}
	}
	for i, s := range c.TrustedSources {
		if _, err := trusted.Parse([]string{s}); err != nil {
			bad("trusted_sources[%d]: %w", i, err)
		}
	}
	if c.TLSCert == "" && c.TLSKey != "" {
		bad("tls_cert: must be set together with tls_key")
	}
	if c.TLSCert != "" && c.TLSKey == "" {
		bad("tls_key: must be set together with tls_cert")
	}
	if c.MaxBody <= 0 {
		bad("max_body: %d: must be positive", c.MaxBody)
	}
	if c.WaitTimeout <= 0 {
		bad("wait_timeout: %s: must be positive", c.WaitTimeout)
	}
	return errors.Join(errs...)
}

// isLoopbackHost reports whether the host part of a listen address can only
// be reached from this machine: "localhost" or a loopback IP. An empty host
// or a wildcard listens on every interface.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
