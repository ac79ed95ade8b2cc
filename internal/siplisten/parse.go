package siplisten

import (
	"fmt"
	"net"
	"slices"
	"strings"
)

// Parse parses a listen entry "transport:host:port" ("udp:127.0.0.1:5080")
// whose transport, lowered, must be one of transports. It returns the
// transport and host:port.
func Parse(s string, transports ...string) (network, addr string, err error) {
	network, addr, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return "", "", fmt.Errorf("%q: want transport:host:port", s)
	}
	network = strings.ToLower(network)
	if !slices.Contains(transports, network) {
		return "", "", fmt.Errorf("%q: transport must be %s", s, oneOf(transports))
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", "", fmt.Errorf("%q: %w", s, err)
	}
	return network, addr, nil
}

// oneOf lists names as "a, b or c".
func oneOf(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// IsWildcard reports whether host is empty or an unspecified address
// (0.0.0.0, ::): not one a peer can be sent to.
func IsWildcard(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}
