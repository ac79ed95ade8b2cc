package mgmt

import (
	"errors"
	"fmt"
	"net"
	"time"
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
	// listen on. It binds to loopback by default: expose it with care.
	HTTPListen string `yaml:"http_listen"`
	// Token, when set, is required as "Authorization: Bearer <token>" on
	// every endpoint except /healthz.
	Token string `yaml:"token"`
	// TLSCert and TLSKey are PEM file paths; when both are set the server
	// speaks HTTPS.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
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
		HTTPListen:  DefaultHTTPListen,
		MaxBody:     DefaultMaxBody,
		WaitTimeout: DefaultWaitTimeout,
	}
}

// Validate checks the configuration and returns the first problem found.
func (c Config) Validate() error {
	if c.HTTPListen == "" {
		return errors.New("mgmt: http_listen: must not be empty")
	}
	if _, _, err := net.SplitHostPort(c.HTTPListen); err != nil {
		return fmt.Errorf("mgmt: http_listen %q: %w", c.HTTPListen, err)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("mgmt: tls_cert and tls_key must be set together")
	}
	if c.MaxBody <= 0 {
		return fmt.Errorf("mgmt: max_body: must be positive, got %d", c.MaxBody)
	}
	if c.WaitTimeout <= 0 {
		return fmt.Errorf("mgmt: wait_timeout: must be positive, got %s", c.WaitTimeout)
	}
	return nil
}
