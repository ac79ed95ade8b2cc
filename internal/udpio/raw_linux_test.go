//go:build linux

package udpio

import (
	"net"
	"strconv"
	"testing"
)

// TestZones: the scope id of a link-local peer becomes its zone (the
// interface's name, else the number) and back, by name or by number.
func TestZones(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skip("no loopback interface named lo")
	}
	if got := zoneIndex(lo.Name); got != uint32(lo.Index) {
		t.Fatalf("zoneIndex(%q) = %d, want %d", lo.Name, got, lo.Index)
	}
	if got := zoneIndex(strconv.Itoa(lo.Index)); got != uint32(lo.Index) {
		t.Fatalf("numeric zone: %d, want %d", got, lo.Index)
	}
	if got := zoneName(uint32(lo.Index)); got != lo.Name {
		t.Fatalf("zoneName(%d) = %q, want %q", lo.Index, got, lo.Name)
	}
	if got := zoneName(1 << 30); got != strconv.Itoa(1<<30) {
		t.Fatalf("unknown scope id named %q", got)
	}
}
