package ingest

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/puaside/puaside/internal/trusted"
)

// Config is the ingest section of the puaside configuration.
//
// Durations are time.Duration values written as "32s" (a bare integer is
// seconds).
type Config struct {
	// ReplicateListen lists the sockets receiving t_replicate copies, as
	// "udp:host:port", "tcp:host:port" or "tls:host:port" (TLS needs
	// tls_cert and tls_key; Kamailio:
	// t_replicate("sip:host:port;transport=tls")). Requests received here
	// are answered with a stateless 200 OK. Empty disables the input.
	ReplicateListen []string `yaml:"replicate_listen"`
	// TraceListen lists the sockets receiving siptrace/tracer plain copies
	// ("udp:host:port", "tcp:host:port"). Nothing received here is ever
	// answered. Empty disables the input.
	TraceListen []string `yaml:"trace_listen"`
	// HEPListen lists the sockets receiving HEPv3 packets ("udp:host:port",
	// "tcp:host:port", "tls:host:port"). Empty disables HEP.
	HEPListen []string `yaml:"hep_listen"`
	// HEPAuthKey is, when not empty, the auth key (chunk 0x000e) every HEP
	// packet must carry; packets without it or with another key are dropped.
	HEPAuthKey string `yaml:"hep_auth_key"`
	// TLSCert is the PEM certificate file of the tls: inputs.
	TLSCert string `yaml:"tls_cert"`
	// TLSKey is the PEM private key file of tls_cert.
	TLSKey string `yaml:"tls_key"`
	// TrustedSources are the CIDRs allowed to send on every input (SIP,
	// HEP and JSON events). Anything else is dropped and counted.
	TrustedSources []string `yaml:"trusted_sources"`
	// QueueSize bounds the number of items waiting for the trackers; when
	// the queue is full new input is dropped (never blocks a socket).
	QueueSize int `yaml:"queue_size"`
	// DedupWindow is how long a message key is remembered to drop the
	// second copy of a traced message and retransmissions.
	DedupWindow time.Duration `yaml:"dedup_window"`
	// MaxMessageSize is the largest SIP message or HEP packet accepted, in
	// bytes; larger input is dropped as oversize.
	MaxMessageSize int `yaml:"max_message_size"`
	// MaxURILength is the longest URI accepted, in bytes: the Request-URI
	// and the From, To and Contact URIs of SIP copies, and the URIs of
	// JSON events. Longer input is dropped (reason uri_too_long). The
	// default is the width of Kamailio's location.contact column. 0
	// disables the bound.
	MaxURILength int `yaml:"max_uri_length"`
	// MaxCallIDLength is the longest Call-ID accepted, in bytes (the width
	// of Kamailio's callid columns by default); longer input is dropped
	// (reason callid_too_long). 0 disables the bound.
	MaxCallIDLength int `yaml:"max_callid_length"`
	// MaxTagLength is the longest From or To tag accepted, in bytes (the
	// width of Kamailio's tag columns by default); longer input is dropped
	// (reason tag_too_long). 0 disables the bound.
	MaxTagLength int `yaml:"max_tag_length"`
	// MaxHeaderLength is the longest header line accepted in a SIP copy, in
	// bytes, name and folded continuation lines included; it also bounds
	// the free-text values of JSON events (user_agent, instance, display
	// names). Longer input is dropped (reason header_too_long). 0 disables
	// the bound.
	MaxHeaderLength int `yaml:"max_header_length"`
	// UDPReadBuffer is the receive buffer (SO_RCVBUF) asked for on every UDP
	// input, in bytes, so that a burst of copies waits in the kernel rather
	// than being dropped there (the kernel may grant less: net.core.rmem_max).
	// 0 keeps the system default.
	UDPReadBuffer int `yaml:"udp_read_buffer"`
}

// DefaultConfig returns the defaults: loopback listeners, loopback trust,
// a 10000-item queue, a 32 s dedup window, 64 KiB messages, and URIs,
// Call-IDs, tags and header lines bounded to 512, 255, 128 and 4096 bytes.
func DefaultConfig() Config {
	return Config{
		ReplicateListen: []string{"udp:127.0.0.1:5090", "tcp:127.0.0.1:5090"},
		TraceListen:     []string{"udp:127.0.0.1:5091"},
		HEPListen:       []string{"udp:127.0.0.1:9060"},
		TrustedSources:  []string{"127.0.0.0/8", "::1/128"},
		QueueSize:       10000,
		DedupWindow:     32 * time.Second,
		MaxMessageSize:  65535,
		MaxURILength:    512,
		MaxCallIDLength: 255,
		MaxTagLength:    128,
		MaxHeaderLength: 4096,
		UDPReadBuffer:   4 << 20,
	}
}

// minBound is the smallest length bound accepted (max_uri_length, ...):
// below it ordinary traffic would be dropped.
const minBound = 16

// maxSize is the hard upper bound of MaxMessageSize: the HEP total length
// and the UDP payload are 16-bit.
const maxSize = 65535

// Validate checks the configuration without changing it and reports every
// problem, each starting with its key ("queue_size: ...").
func (c Config) Validate() error {
	var errs []error
	needTLS := false
	for _, l := range []struct {
		name  string
		addrs []string
	}{{"replicate_listen", c.ReplicateListen}, {"trace_listen", c.TraceListen}, {"hep_listen", c.HEPListen}} {
		for i, a := range l.addrs {
			n, _, err := splitListen(a)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s[%d]: %w", l.name, i, err))
			}
			needTLS = needTLS || n == "tls"
		}
	}
	switch {
	case c.TLSCert == "" && c.TLSKey != "":
		errs = append(errs, errors.New("tls_cert: must be set together with tls_key"))
	case c.TLSCert != "" && c.TLSKey == "":
		errs = append(errs, errors.New("tls_key: must be set together with tls_cert"))
	case needTLS && c.TLSCert == "":
		errs = append(errs, errors.New("tls_cert: a tls: input needs tls_cert and tls_key"))
	}
	for i, s := range c.TrustedSources {
		if _, err := trusted.Parse([]string{s}); err != nil {
			errs = append(errs, fmt.Errorf("trusted_sources[%d]: %w", i, err))
		}
	}
	if c.QueueSize < 1 {
		errs = append(errs, fmt.Errorf("queue_size: %d: must be at least 1", c.QueueSize))
	}
	if c.DedupWindow < 0 {
		errs = append(errs, fmt.Errorf("dedup_window: %s: must not be negative", c.DedupWindow))
	}
	if c.MaxMessageSize < 64 || c.MaxMessageSize > maxSize {
		errs = append(errs, fmt.Errorf("max_message_size: %d: must be between 64 and %d", c.MaxMessageSize, maxSize))
	}
	for _, b := range []struct {
		name string
		v    int
	}{
		{"max_uri_length", c.MaxURILength}, {"max_callid_length", c.MaxCallIDLength},
		{"max_tag_length", c.MaxTagLength}, {"max_header_length", c.MaxHeaderLength},
	} {
		if b.v < 0 || (b.v > 0 && b.v < minBound) {
			errs = append(errs, fmt.Errorf("%s: %d: must be 0 (no bound) or at least %d", b.name, b.v, minBound))
		}
	}
	if c.UDPReadBuffer < 0 {
		errs = append(errs, fmt.Errorf("udp_read_buffer: %d: must not be negative", c.UDPReadBuffer))
	}
	return errors.Join(errs...)
}

// splitListen splits "udp:host:port" into the network ("udp", "tcp" or
// "tls") and the address.
func splitListen(s string) (network, addr string, err error) {
	n, a, ok := strings.Cut(s, ":")
	n = strings.ToLower(n)
	if !ok || (n != "udp" && n != "tcp" && n != "tls") || a == "" {
		return "", "", fmt.Errorf("%q: want udp:host:port, tcp:host:port or tls:host:port", s)
	}
	if _, _, err := net.SplitHostPort(a); err != nil {
		return "", "", fmt.Errorf("%q: %w", s, err)
	}
	return n, a, nil
}
