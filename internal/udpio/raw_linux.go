//go:build linux

package udpio

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"unsafe"
)

// rawConn makes the socket's sendto/recvfrom as raw system calls inside
// syscall.RawConn's Read and Write, which wait for the socket through the
// runtime poller when a call reports EAGAIN.
type rawConn struct {
	rc  syscall.RawConn
	six bool // AF_INET6 socket: IPv4 peers are written as mapped addresses
	// sends and recvs hold *sendCall and *recvCall: a call's arguments
	// and results live in one, reused, because the function handed to
	// RawConn escapes and takes every variable it uses with it (four
	// allocations a datagram otherwise).
	sends, recvs *sync.Pool
}

// sendCall is one sendto: its arguments, its results, and the function
// RawConn.Write runs, bound to it once.
type sendCall struct {
	sa4   syscall.RawSockaddrInet4
	sa6   syscall.RawSockaddrInet6
	sa    unsafe.Pointer
	slen  uintptr
	buf   []byte
	empty [1]byte // an empty datagram: sendto still needs a pointer
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

func (s *sendCall) send(fd uintptr) bool {
	p := &s.empty[0]
	if len(s.buf) > 0 {
		p = &s.buf[0]
	}
	for {
		r1, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(p)), uintptr(len(s.buf)), 0, uintptr(s.sa), s.slen)
		if e == syscall.EINTR {
			continue
		}
		s.n, s.errno = int(r1), e
		return e != syscall.EAGAIN
	}
}

// recvCall is one recvfrom, as sendCall is one sendto.
type recvCall struct {
	rsa   syscall.RawSockaddrAny
	buf   []byte
	tries int
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

func (r *recvCall) recv(fd uintptr) bool {
	r.tries++
	for {
		l := uint32(syscall.SizeofSockaddrAny)
		r1, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&r.buf[0])), uintptr(len(r.buf)), 0,
			uintptr(unsafe.Pointer(&r.rsa)), uintptr(unsafe.Pointer(&l)))
		if e == syscall.EINTR {
			continue
		}
		r.n, r.errno = int(r1), e
		return e != syscall.EAGAIN
	}
}

func newCallPools() (sends, recvs *sync.Pool) {
	sends = &sync.Pool{New: func() any {
		s := &sendCall{}
		s.fn = s.send
		return s
	}}
	recvs = &sync.Pool{New: func() any {
		r := &recvCall{}
		r.fn = r.recv
		return r
	}}
	return sends, recvs
}

func newRaw(c *net.UDPConn) (rawConn, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return rawConn{}, fmt.Errorf("udpio: %w", err)
	}
	var sa syscall.Sockaddr
	var serr error
	if err := rc.Control(func(fd uintptr) { sa, serr = syscall.Getsockname(int(fd)) }); err != nil {
		return rawConn{}, fmt.Errorf("udpio: %w", err)
	}
	if serr != nil {
		return rawConn{}, fmt.Errorf("udpio: getsockname: %w", serr)
	}
	sends, recvs := newCallPools()
	switch sa.(type) {
	case *syscall.SockaddrInet4:
		return rawConn{rc: rc, sends: sends, recvs: recvs}, nil
	case *syscall.SockaddrInet6:
		return rawConn{rc: rc, six: true, sends: sends, recvs: recvs}, nil
	}
	return rawConn{}, errors.New("udpio: not an IP socket")
}

// opError wraps a failure as net does, so that errors.Is(err,
// net.ErrClosed) and timeouts read as they do on a *net.UDPConn.
func opError(op string, c *net.UDPConn, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return err // RawConn's own (closed, deadline)
	}
	return &net.OpError{Op: op, Net: "udp", Source: c.LocalAddr(), Err: err}
}

// readFrom reads one datagram; waited reports that the socket was empty
// at first, so the call waited for this datagram.
func (r rawConn) readFrom(c *net.UDPConn, b []byte) (n int, from netip.AddrPort, waited bool, _ error) {
	if len(b) == 0 {
		return 0, netip.AddrPort{}, false, nil
	}
	call := r.recvs.Get().(*recvCall)
	defer func() {
		call.buf = nil
		r.recvs.Put(call)
	}()
	call.buf, call.tries = b, 0
	err := r.rc.Read(call.fn)
	if err != nil {
		return 0, netip.AddrPort{}, false, opError("read", c, err)
	}
	if call.errno != 0 {
		return 0, netip.AddrPort{}, false, opError("read", c, call.errno)
	}
	return call.n, sockaddrToAddrPort(&call.rsa), call.tries > 1, nil
}

func sockaddrToAddrPort(rsa *syscall.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case syscall.AF_INET:
		p := (*syscall.RawSockaddrInet4)(unsafe.Pointer(rsa))
		port := (*[2]byte)(unsafe.Pointer(&p.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), uint16(port[0])<<8|uint16(port[1]))
	case syscall.AF_INET6:
		p := (*syscall.RawSockaddrInet6)(unsafe.Pointer(rsa))
		port := (*[2]byte)(unsafe.Pointer(&p.Port))
		addr := netip.AddrFrom16(p.Addr)
		if p.Scope_id != 0 {
			addr = addr.WithZone(zoneName(p.Scope_id))
		}
		return netip.AddrPortFrom(addr, uint16(port[0])<<8|uint16(port[1]))
	}
	return netip.AddrPort{}
}

// zoneName is the zone of a link-local peer's scope id: its interface's
// name, or the number when there is no such interface (as net does). Only
// zoned (link-local) peers pay the lookup.
func zoneName(id uint32) string {
	if ifi, err := net.InterfaceByIndex(int(id)); err == nil {
		return ifi.Name
	}
	return strconv.FormatUint(uint64(id), 10)
}

// zoneIndex is the scope id of a zone: a number, or an interface name;
// 0 when it names none.
func zoneIndex(z string) uint32 {
	if n, err := strconv.ParseUint(z, 10, 32); err == nil {
		return uint32(n)
	}
	if ifi, err := net.InterfaceByName(z); err == nil {
		return uint32(ifi.Index)
	}
	return 0
}

func (r rawConn) writeTo(c *net.UDPConn, b []byte, to netip.AddrPort) (int, error) {
	addr := to.Addr()
	if !addr.IsValid() {
		return 0, opError("write", c, errors.New("no destination address"))
	}
	if !r.six {
		addr = addr.Unmap()
		if !addr.Is4() {
			return 0, opError("write", c, syscall.EAFNOSUPPORT)
		}
	}
	call := r.sends.Get().(*sendCall)
	defer func() {
		call.buf = nil
		r.sends.Put(call)
	}()
	if !r.six {
		call.sa4 = syscall.RawSockaddrInet4{Family: syscall.AF_INET, Addr: addr.As4()}
		port := (*[2]byte)(unsafe.Pointer(&call.sa4.Port))
		port[0], port[1] = byte(to.Port()>>8), byte(to.Port())
		call.sa, call.slen = unsafe.Pointer(&call.sa4), syscall.SizeofSockaddrInet4
	} else {
		call.sa6 = syscall.RawSockaddrInet6{Family: syscall.AF_INET6, Addr: addr.As16()} // an IPv4 address becomes its mapped form
		port := (*[2]byte)(unsafe.Pointer(&call.sa6.Port))
		port[0], port[1] = byte(to.Port()>>8), byte(to.Port())
		if z := addr.Zone(); z != "" {
			call.sa6.Scope_id = zoneIndex(z)
		}
		call.sa, call.slen = unsafe.Pointer(&call.sa6), syscall.SizeofSockaddrInet6
	}
	call.buf = b
	err := r.rc.Write(call.fn)
	if err != nil {
		return 0, opError("write", c, err)
	}
	if call.errno != 0 {
		return 0, opError("write", c, call.errno)
	}
	return call.n, nil
}
