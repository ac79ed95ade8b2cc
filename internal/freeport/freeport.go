// Package freeport picks loopback ports free for both UDP and TCP, for the
// test harnesses (internal/kamailiotest) and the load tool
// (internal/loadproc) that start SIP peers on ports of their own. It sits
// outside the data flow and imports nothing of this module.
package freeport

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// Port returns a loopback port free for both UDP and TCP at the time of
// the call (both are bound to check, then released).
func Port() (int, error) {
	ports, err := Ports(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// Ports returns n distinct loopback ports, each free for both UDP and TCP
// at the time of the call: every port stays bound until all n are found,
// so two picks in a row cannot hand out the same one.
//
// The ports are drawn at random below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), so that the source port of a connection
// or socket some other process opens between this pick and the bind of
// the caller's peer cannot take one: a port handed out from the ephemeral
// range (bind to :0) came back to that pool when it was released here.
// Where the range cannot be read or leaves no room below it, the kernel
// picks as before.
func Ports(n int) ([]int, error) {
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	lo, hi := belowEphemeral()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries >= 50*n {
			return nil, errors.New("freeport: no port free for both UDP and TCP after many tries")
		}
		want := 0
		if hi > lo {
			want = lo + rand.IntN(hi-lo)
		}
		pc, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(want)))
		if err != nil {
			if want != 0 {
				continue // taken
			}
			return nil, fmt.Errorf("freeport: %w", err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			pc.Close()
			continue
		}
		held = append(held, pc, l)
		ports = append(ports, port)
	}
	return ports, nil
}

// belowEphemeral returns the range [lo, hi) of ports to draw from: from
// 10000 up to the start of the ephemeral range. lo == hi when there is
// none.
func belowEphemeral() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0
	}
	start, err := strconv.Atoi(f[0])
	if err != nil || start <= minPort+1000 {
		return 0, 0
	}
	return minPort, start
}

// minPort is the lowest port Ports draws: well above the ports of common
// services.
const minPort = 10000
