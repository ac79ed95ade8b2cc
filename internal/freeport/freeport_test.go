package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestPortsDistinctAndFree: the ports are distinct and each can be bound
// for UDP and TCP once Ports returns.
func TestPortsDistinctAndFree(t *testing.T) {
	ports, err := Ports(8)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d handed out twice in %v", p, ports)
		}
		seen[p] = true
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		pc, err := net.ListenPacket("udp4", addr)
		if err != nil {
			t.Fatalf("udp %d: %v", p, err)
		}
		l, err := net.Listen("tcp4", addr)
		if err != nil {
			t.Fatalf("tcp %d: %v", p, err)
		}
		pc.Close()
		l.Close()
	}
}

// TestPortsBelowTheEphemeralRange: where the kernel tells its ephemeral
// range, the ports come from below it, so that no socket bound to :0 by
// another process can be handed one of them.
func TestPortsBelowTheEphemeralRange(t *testing.T) {
	lo, hi := belowEphemeral()
	if hi <= lo {
		t.Skip("no ephemeral port range to stay below on this system")
	}
	ports, err := Ports(20)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		if p < lo || p >= hi {
			t.Fatalf("port %d outside [%d, %d)", p, lo, hi)
		}
	}
}
