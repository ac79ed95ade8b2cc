//go:build !linux

package udpio

import (
	"net"
	"net/netip"
)

// rawConn is the plain socket where raw system calls are not used.
type rawConn struct{}

func newRaw(*net.UDPConn) (rawConn, error) { return rawConn{}, nil }

// readFrom reads one datagram; whether the call waited is not known here.
func (rawConn) readFrom(c *net.UDPConn, b []byte) (int, netip.AddrPort, bool, error) {
	n, from, err := c.ReadFromUDPAddrPort(b)
	return n, from, false, err
}

func (rawConn) writeTo(c *net.UDPConn, b []byte, to netip.AddrPort) (int, error) {
	return c.WriteToUDPAddrPort(b, to)
}
