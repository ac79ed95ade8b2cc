package pua

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mod     func(*Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"no listen", func(c *Config) { c.Listen = nil }, "listen"},
		{"bad transport", func(c *Config) { c.Listen = []string{"sctp:127.0.0.1:5080"} }, "transport"},
		{"no port", func(c *Config) { c.Listen = []string{"udp:127.0.0.1"} }, "listen"},
		{"wildcard without advertised", func(c *Config) { c.Listen = []string{"udp:0.0.0.0:5080"} }, "advertised_address"},
		{"wildcard advertised", func(c *Config) { c.AdvertisedAddress = "0.0.0.0:5080" }, "wildcard"},
		{"bad server", func(c *Config) { c.ServerAddress = "not a uri" }, "server_address"},
		{"half auth", func(c *Config) { c.AuthUsername = "u" }, "auth_password"},
		{"hash_size above 16", func(c *Config) { c.HashSize = 17 }, "hash_size: 17: must be between 2 and 16"},
		{"hash_size 1", func(c *Config) { c.HashSize = 1 }, "hash_size"},
		{"retry_max below retry_min", func(c *Config) { c.RetryMin, c.RetryMax = 10*time.Second, 5*time.Second }, "retry_max: 5s: must not be below retry_min"},
		{"negative retry_min", func(c *Config) { c.RetryMin = -time.Second }, "retry_min"},
		{"negative udp_read_buffer", func(c *Config) { c.UDPReadBuffer = -1 }, "udp_read_buffer: -1"},
		{"system udp_read_buffer", func(c *Config) { c.UDPReadBuffer = 0 }, ""},
		{"tls listener without certificate", func(c *Config) { c.Listen = []string{"tls:127.0.0.1:5081"} }, "cert_file"},
		{"tls listener", func(c *Config) {
			c.Listen = []string{"tls:127.0.0.1:5081"}
			c.TLS.CertFile, c.TLS.KeyFile = "/etc/puaside/cert.pem", "/etc/puaside/key.pem"
		}, ""},
		{"half certificate", func(c *Config) { c.TLS.CertFile = "/etc/puaside/cert.pem" }, "key_file"},
		{"bad verify", func(c *Config) { c.TLS.Verify = "sometimes" }, "tls.verify"},
		{"bad min version", func(c *Config) { c.TLS.MinVersion = "1.0" }, "tls.min_version"},
		{"sips over udp", func(c *Config) { c.ServerAddress = "sips:presence.example.com;transport=udp" }, "needs TLS"},
		{"unknown transport", func(c *Config) { c.OutboundProxy = "sip:proxy.example.com;transport=sctp" }, "not supported"},
		{"sips server", func(c *Config) { c.ServerAddress = "sips:presence.example.com" }, ""},
		{"bad dns server", func(c *Config) { c.DNSServer = "10.0.0.53" }, "dns_server"},
		{"wildcard with advertised", func(c *Config) {
			c.Listen = []string{"udp:0.0.0.0:5080"}
			c.AdvertisedAddress = "192.0.2.1:5080"
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
			}
		})
	}
	c := Config{Listen: []string{"udp:127.0.0.1:5080"}}.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.DefaultExpires != time.Hour || c.MaxOutstanding != 256 || c.HashSize != 9 || c.RetryMax != time.Minute ||
		c.UpdatePeriod != time.Second || c.RequestTimeout != 32*time.Second {
		t.Fatalf("zero values not defaulted: %+v", c)
	}
}

func TestContactURI(t *testing.T) {
	c := DefaultConfig()
	c.Listen = []string{"udp:0.0.0.0:5080"}
	c.AdvertisedAddress = "192.0.2.1:5099"
	e, err := New(c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.ContactURI(); got != "sip:puaside@192.0.2.1:5099" {
		t.Fatalf("contact %q", got)
	}
}
