// Package freeport picks loopback ports free for both UDP and TCP, for the
// test harnesses (internal/kamailiotest) and the load tool
// (internal/loadproc) that start SIP peers on ports of their own. It sits
// outside the data flow and imports nothing of this module.
package freeport

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
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
func Ports(n int) ([]int, error) {
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries >= 50*n {
			return nil, errors.New("freeport: no port free for both UDP and TCP after many tries")
		}
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
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
