// Package udpio wraps a UDP socket so that each datagram read or written
// costs one system call that the Go scheduler does not have to account
// for. It sits under the SIP sockets of every part that speaks UDP (ingest's
// mirrored inputs, the pua engine, the embedded presence server) and
// imports nothing of this module.
//
// Why: a read or write through net.UDPConn enters the scheduler's
// blocking-syscall state (entersyscall/exitsyscall). On a host whose cores
// are idle between datagrams, every such entry wakes the runtime's system
// monitor, which then polls every 20 µs for a millisecond before it sleeps
// again, and a write that takes longer than one of its ticks (a loopback
// send delivers the datagram to the receiver inside the call) has its
// processor handed to another thread. At a thousand datagrams a second
// that bookkeeping cost more CPU than the datagrams themselves
// (BENCHMARKS.md). A datagram socket in Go is non-blocking, so a send or
// receive returns at once (or with EAGAIN, after which the call waits for
// the socket through the runtime's poller as net does): on Linux the calls
// are made as raw system calls. Elsewhere Conn is the plain *net.UDPConn.
package udpio

import (
	"net"
	"net/netip"
	"sync/atomic"
)

// Conn is a UDP socket whose datagram reads and writes bypass the
// scheduler's syscall accounting where the platform allows. Everything
// else (deadlines, Close, LocalAddr, SetReadBuffer) is the embedded
// *net.UDPConn's. It implements net.PacketConn.
type Conn struct {
	*net.UDPConn
	raw rawConn
	tap atomic.Pointer[Tap]
}

// Tap sees each datagram ReadFrom reads before it is returned: when it
// reports true the datagram is taken (ReadFrom reads the next one). It
// runs on the reading goroutine and must not keep the slice.
type Tap func(datagram []byte, from netip.AddrPort) bool

// SetTap installs (nil: removes) the Tap of ReadFrom.
func (c *Conn) SetTap(t Tap) {
	if t == nil {
		c.tap.Store(nil)
		return
	}
	c.tap.Store(&t)
}

// New wraps c. It fails only when the socket's descriptor cannot be
// reached.
func New(c *net.UDPConn) (*Conn, error) {
	r, err := newRaw(c)
	if err != nil {
		return nil, err
	}
	return &Conn{UDPConn: c, raw: r}, nil
}

// Wrap wraps pc when it is a *net.UDPConn and the wrapping succeeds;
// otherwise it returns pc unchanged.
func Wrap(pc net.PacketConn) net.PacketConn {
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return pc
	}
	c, err := New(uc)
	if err != nil {
		return pc
	}
	return c
}

// ReadFromUDPAddrPort reads one datagram into b.
func (c *Conn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	n, from, _, err := c.raw.readFrom(c.UDPConn, b)
	return n, from, err
}

// ReadWaited is ReadFromUDPAddrPort that also reports whether the socket
// was empty when the call began, so that it waited for this datagram: a
// reader that waited is not behind, and may spend longer on what it read
// before it reads again. Where this is not known (not Linux) waited is
// false.
func (c *Conn) ReadWaited(b []byte) (n int, from netip.AddrPort, waited bool, err error) {
	return c.raw.readFrom(c.UDPConn, b)
}

// WriteToUDPAddrPort writes one datagram to addr.
func (c *Conn) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	return c.raw.writeTo(c.UDPConn, b, addr)
}

// ReadFrom reads one datagram into b (net.PacketConn), the next one when
// the Tap takes it.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, ap, err := c.ReadFromUDPAddrPort(b)
		if err != nil {
			return n, nil, err
		}
		if t := c.tap.Load(); t != nil && (*t)(b[:n], ap) {
			continue
		}
		return n, net.UDPAddrFromAddrPort(ap), nil
	}
}

// WriteTo writes one datagram to addr (net.PacketConn). An address that
// is not a *net.UDPAddr is written by the embedded socket.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return c.UDPConn.WriteTo(b, addr)
	}
	return c.WriteToUDPAddrPort(b, ua.AddrPort())
}
