package mgmt_test

import (
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
			want: mgmt.Config{HTTPListen: "0.0.0.0:9000", Token: "abc", TLSCert: "c.pem", TLSKey: "k.pem", MaxBody: 2048, WaitTimeout: 5 * time.Second}},
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
			if cfg != tc.want {
				t.Errorf("got %+v, want %+v", cfg, tc.want)
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}
