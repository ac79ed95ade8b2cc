package mgmt_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/puaside/puaside/mgmt"
)

func TestConfigYAML(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		want    mgmt.Config
		wantErr string
	}{
		{name: "empty keeps defaults", doc: "{}", want: mgmt.DefaultConfig()},
		{name: "all fields", doc: "http_listen: 0.0.0.0:9000\ntoken: abc\ntls_cert: c.pem\ntls_key: k.pem\nmax_body: 2048\nwait_timeout: 5s\n",
			want: mgmt.Config{HTTPListen: "0.0.0.0:9000", Token: "abc", TLSCert: "c.pem", TLSKey: "k.pem", MaxBody: 2048, WaitTimeout: 5 * time.Second,
				TrustedSources: []string{"127.0.0.0/8", "::1/128"}}},
		{name: "management plane", doc: "http_listen: '[::]:9000'\nallow_insecure: true\ntrusted_sources: [10.0.0.0/8, 192.0.2.7]\nmetrics_listen: 0.0.0.0:9100\n",
			want: mgmt.Config{HTTPListen: "[::]:9000", AllowInsecure: true, TrustedSources: []string{"10.0.0.0/8", "192.0.2.7"},
				MetricsListen: "0.0.0.0:9100", MaxBody: mgmt.DefaultMaxBody, WaitTimeout: mgmt.DefaultWaitTimeout}},
		{name: "unknown key", doc: "http_lisen: x\n", wantErr: "http_lisen"},
		{name: "wrong type", doc: "max_body: lots\n", wantErr: "lots"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mgmt.DefaultConfig()
			dec := yaml.NewDecoder(strings.NewReader(tc.doc))
			dec.KnownFields(true)
			err := dec.Decode(&cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cfg, tc.want) {
				t.Errorf("got %+v, want %+v", cfg, tc.want)
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

// TestConfigRefusesExposedAPIWithoutToken: an http_listen other than
// loopback needs a token or an explicit allow_insecure.
func TestConfigRefusesExposedAPIWithoutToken(t *testing.T) {
	for _, tc := range []struct {
		listen, token string
		insecure      bool
		wantErr       string
	}{
		{listen: "127.0.0.1:8080"},
		{listen: "127.0.0.5:8080"},
		{listen: "[::1]:8080"},
		{listen: "localhost:8080"},
		{listen: "0.0.0.0:8080", wantErr: "not a loopback address"},
		{listen: ":8080", wantErr: "not a loopback address"},
		{listen: "[::]:8080", wantErr: "not a loopback address"},
		{listen: "192.0.2.1:8080", wantErr: "set token"},
		{listen: "api.example.com:8080", wantErr: "allow_insecure"},
		{listen: "0.0.0.0:8080", token: "secret"},
		{listen: "0.0.0.0:8080", insecure: true},
	} {
		cfg := mgmt.DefaultConfig()
		cfg.HTTPListen, cfg.Token, cfg.AllowInsecure = tc.listen, tc.token, tc.insecure
		err := cfg.Validate()
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("%s token=%q insecure=%v: %v", tc.listen, tc.token, tc.insecure, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s token=%q insecure=%v: error %v, want %q", tc.listen, tc.token, tc.insecure, err, tc.wantErr)
		}
		if _, err := mgmt.New(cfg, mgmt.Deps{}, mgmt.Options{}); err == nil {
			t.Errorf("%s: New accepted an exposed API without token", tc.listen)
		}
	}
	cfg := mgmt.DefaultConfig()
	cfg.TrustedSources = []string{"10.0.0.0/33"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "10.0.0.0/33") {
		t.Errorf("bad trusted_sources: %v", err)
	}
	cfg = mgmt.DefaultConfig()
	cfg.MetricsListen = "nonsense"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "metrics_listen") {
		t.Errorf("bad metrics_listen: %v", err)
	}
}
