package siplisten

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in, network, addr, err string
	}{
		{in: "udp:127.0.0.1:5080", network: "udp", addr: "127.0.0.1:5080"},
		{in: " TLS:[::1]:5061 ", network: "tls", addr: "[::1]:5061"},
		{in: "udp", err: "want transport:host:port"},
		{in: "ws:127.0.0.1:80", err: "transport must be udp, tcp or tls"},
		{in: "tcp:127.0.0.1", err: "missing port"},
	} {
		n, a, err := Parse(tc.in, "udp", "tcp", "tls")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Parse(%q): err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || n != tc.network || a != tc.addr {
			t.Errorf("Parse(%q) = %q, %q, %v; want %q, %q", tc.in, n, a, err, tc.network, tc.addr)
		}
	}
}

func TestIsWildcard(t *testing.T) {
	for host, want := range map[string]bool{"": true, "0.0.0.0": true, "::": true, "127.0.0.1": false, "pbx.example.com": false} {
		if got := IsWildcard(host); got != want {
			t.Errorf("IsWildcard(%q) = %v, want %v", host, got, want)
		}
	}
}
