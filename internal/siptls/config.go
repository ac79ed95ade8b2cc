package siptls

import (
	"fmt"
	"strings"
	"time"
)

// Config configures SIP over TLS (the `pua.tls` and `pa.tls` sections): the `tls:` listeners, and the
// connections opened to the presence server, the outbound proxy
// and phones when a destination asks for TLS (a sips: URI,
// ;transport=tls, or a NAPTR/SRV record for TLS).
type Config struct {
	// CertFile is the PEM certificate (chain) presented on the `tls:`
	// listeners and, when a server asks for one, as client certificate. It
	// and key_file are read again when they change (checked at most once a
	// second, at a handshake), so a renewed certificate is used without a
	// restart. Required when a `tls:` listener is configured.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of cert_file.
	KeyFile string `yaml:"key_file"`
	// CAFile is a PEM bundle of the certificate authorities trusted for the
	// far end's certificate; empty means the system's. Read again when it
	// changes, as the certificate is.
	CAFile string `yaml:"ca_file"`
	// Verify is how the far end's certificate is checked: "full" (chain and
	// name: the server_name, else the SIP domain the destination was
	// resolved from, else its IP address), "chain" (chain only, any name) or
	// "none" (not checked at all, for tests only).
	Verify string `yaml:"verify"`
	// ServerName is, if set, sent as SNI and is the name every server
	// certificate must carry, instead of the destination's own name.
	ServerName string `yaml:"server_name"`
	// MinVersion is the oldest TLS version accepted: "1.2" or "1.3".
	MinVersion string `yaml:"min_version"`
	// HandshakeTimeout bounds the TLS handshake of a connection accepted on
	// a `tls:` listener: a peer that stalls it is disconnected.
	// Connections we open are bounded by request_timeout.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{Verify: "full", MinVersion: "1.2", HandshakeTimeout: 10 * time.Second}
}

// WithDefaults returns c with an empty verify, min_version and a zero
// handshake_timeout replaced by the defaults, verify lower-cased.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	c.Verify = strings.ToLower(strings.TrimSpace(c.Verify))
	if c.Verify == "" {
		c.Verify = d.Verify
	}
	c.MinVersion = strings.TrimSpace(c.MinVersion)
	if c.MinVersion == "" {
		c.MinVersion = d.MinVersion
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = d.HandshakeTimeout
	}
	return c
}

// Validate checks c without changing it; needCert is true when a `tls:`
// listener is configured. Each problem starts with its key ("tls.verify: ...").
func (c Config) Validate(needCert bool) []error {
	var errs []error
	switch strings.ToLower(strings.TrimSpace(c.Verify)) {
	case "full", "chain", "none":
	default:
		errs = append(errs, fmt.Errorf("tls.verify: %q: want full, chain or none", c.Verify))
	}
	switch strings.TrimSpace(c.MinVersion) {
	case "1.2", "1.3":
	default:
		errs = append(errs, fmt.Errorf("tls.min_version: %q: want 1.2 or 1.3", c.MinVersion))
	}
	if c.HandshakeTimeout <= 0 {
		errs = append(errs, fmt.Errorf("tls.handshake_timeout: %s: must be positive", c.HandshakeTimeout))
	}
	switch {
	case c.CertFile == "" && c.KeyFile != "":
		errs = append(errs, fmt.Errorf("tls.cert_file: must be set together with tls.key_file"))
	case c.CertFile != "" && c.KeyFile == "":
		errs = append(errs, fmt.Errorf("tls.key_file: must be set together with tls.cert_file"))
	case needCert && c.CertFile == "":
		errs = append(errs, fmt.Errorf("tls.cert_file: a tls: listener needs tls.cert_file and tls.key_file"))
	}
	return errs
}
