package freeport

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
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

// TestPickReservesAcrossCalls: a later call in the same process never
// hands out a port an earlier one did, even once the earlier port is
// released and free again (its user may not have bound it yet).
func TestPickReservesAcrossCalls(t *testing.T) {
	dir := t.TempDir()
	lo, hi := rangeOf(t, 40)
	first, err := pick(20, lo, hi, dir)
	if err != nil {
		t.Fatal(err)
	}
	second, err := pick(20, lo, hi, dir)
	if err != nil {
		t.Fatal(err)
	}
	assertDisjoint(t, first, second)
}

// TestPickReservesAcrossProcesses: a port picked by one process is not
// handed out by another running at the same time (as go test runs the
// test binaries of several packages at once).
func TestPickReservesAcrossProcesses(t *testing.T) {
	if dir := os.Getenv("FREEPORT_CHILD_DIR"); dir != "" {
		lo, _ := strconv.Atoi(os.Getenv("FREEPORT_CHILD_LO"))
		hi, _ := strconv.Atoi(os.Getenv("FREEPORT_CHILD_HI"))
		ports, err := pick(20, lo, hi, dir)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("PORTS %s\n", strings.Trim(fmt.Sprint(ports), "[]"))
		return
	}
	dir := t.TempDir()
	lo, hi := rangeOf(t, 40)
	mine, err := pick(20, lo, hi, dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run", "^TestPickReservesAcrossProcesses$")
	cmd.Env = append(os.Environ(), "FREEPORT_CHILD_DIR="+dir,
		"FREEPORT_CHILD_LO="+strconv.Itoa(lo), "FREEPORT_CHILD_HI="+strconv.Itoa(hi))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var theirs []int
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "PORTS "); ok {
			for _, f := range strings.Fields(rest) {
				p, err := strconv.Atoi(f)
				if err != nil {
					t.Fatalf("child line %q: %v", line, err)
				}
				theirs = append(theirs, p)
			}
		}
	}
	if len(theirs) != 20 {
		t.Fatalf("child gave %d ports:\n%s", len(theirs), out)
	}
	assertDisjoint(t, mine, theirs)
}

// rangeOf returns a range of width ports below the ephemeral range, so
// narrow that two picks of half of it would share ports by chance.
func rangeOf(t *testing.T, width int) (lo, hi int) {
	t.Helper()
	lo, hi = belowEphemeral()
	if hi-lo < width {
		t.Skip("no ephemeral port range to stay below on this system")
	}
	lo += rand.IntN(hi - lo - width)
	return lo, lo + width
}

func assertDisjoint(t *testing.T, a, b []int) {
	t.Helper()
	in := map[int]bool{}
	for _, p := range a {
		in[p] = true
	}
	for _, p := range b {
		if in[p] {
			t.Fatalf("port %d handed out twice: %v and %v", p, a, b)
		}
	}
}
