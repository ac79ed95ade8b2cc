// Package freeport picks loopback ports free for both UDP and TCP, for the
// test harnesses (internal/kamailiotest) and the load tool
// (internal/loadproc) that start SIP peers on ports of their own. It sits
// outside the data flow and imports nothing of this module.
//
// A port is free when it is picked, not when its user binds it: between
// the two, another test binary running at the same time (go test runs
// packages in parallel) could pick the same port. So each port handed out
// is also reserved, by an advisory lock on a file named after it in a
// directory shared by every process of the user, held until the process
// that picked it exits. No other process, and no later call in the same
// one, hands that port out while the lock is held.
package freeport

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
//
// Every port returned is reserved for the life of the calling process
// (see the package comment).
func Ports(n int) ([]int, error) {
	lo, hi := belowEphemeral()
	return pick(n, lo, hi, reserveDir())
}

// pick returns n ports from [lo, hi) (from the kernel when lo == hi), each
// free for UDP and TCP and, when dir is not empty, reserved there.
func pick(n, lo, hi int, dir string) ([]int, error) {
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
		want := 0
		if hi > lo {
			want = lo + rand.IntN(hi-lo)
			if dir != "" && !reserve(dir, want) {
				continue // another process, or an earlier call, has it
			}
		}
		pc, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(want)))
		if err != nil {
			if want != 0 {
				continue // taken
			}
			return nil, fmt.Errorf("freeport: %w", err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		if want == 0 && dir != "" && !reserve(dir, port) {
			pc.Close()
			continue
		}
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

// reserveDir is the directory of the reservation files, shared by every
// process of the user; "" (no reservations) if it cannot be made.
func reserveDir() string {
	dir := filepath.Join(os.TempDir(), "puaside-freeport-"+strconv.Itoa(os.Getuid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return ""
	}
	return dir
}

// reserve takes the lock on port's file in dir and keeps it until the
// process exits: the descriptor is opened without an *os.File, so no
// finalizer closes it, and is never closed. It reports false when another
// open of the file (in this process or another) holds the lock, and true
// when the reservation cannot be made at all, so that a directory gone
// bad makes the pick no worse than without reservations.
func reserve(dir string, port int) bool {
	fd, err := syscall.Open(filepath.Join(dir, strconv.Itoa(port)), syscall.O_CREAT|syscall.O_RDWR|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return true
	}
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		syscall.Close(fd)
		return !errors.Is(err, syscall.EWOULDBLOCK)
	}
	return true
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
