package udpio

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

func listen(t *testing.T, network, addr string) *Conn {
	t.Helper()
	uc, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Skipf("no %s socket on %s here: %v", network, addr, err)
	}
	c, err := New(uc)
	if err != nil {
		uc.Close()
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addrOf(c *Conn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// exchange sends payload from a to b and back, checking bytes and source
// addresses both ways.
func exchange(t *testing.T, a, b *Conn, to netip.AddrPort, payload []byte) {
	t.Helper()
	if err := b.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := a.WriteToUDPAddrPort(payload, to)
	if err != nil || n != len(payload) {
		t.Fatalf("write: %d, %v", n, err)
	}
	buf := make([]byte, 70000)
	n, from, err := b.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(buf[:n], payload) {
		t.Fatalf("read %q, want %q", buf[:n], payload)
	}
	if from.Port() != addrOf(a).Port() || !from.Addr().Unmap().IsLoopback() {
		t.Fatalf("source %v, want loopback port %d", from, addrOf(a).Port())
	}
	// Back through the net.PacketConn methods, to the address read.
	if err := a.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WriteTo([]byte("back"), net.UDPAddrFromAddrPort(from)); err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	n, raddr, err := a.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "back" {
		t.Fatalf("ReadFrom: %q, %v", buf[:n], err)
	}
	if raddr.(*net.UDPAddr).Port != int(addrOf(b).Port()) {
		t.Fatalf("ReadFrom source %v, want port %d", raddr, addrOf(b).Port())
	}
}

func TestIPv4(t *testing.T) {
	a, b := listen(t, "udp4", "127.0.0.1:0"), listen(t, "udp4", "127.0.0.1:0")
	exchange(t, a, b, addrOf(b), []byte("OPTIONS sip:x SIP/2.0\r\n\r\n"))
	// A v4-mapped destination reaches an IPv4 socket.
	mapped := netip.AddrPortFrom(netip.AddrFrom16(addrOf(b).Addr().As16()), addrOf(b).Port())
	exchange(t, a, b, mapped, []byte("mapped"))
	// The largest datagram a SIP input takes and an empty one.
	exchange(t, a, b, addrOf(b), bytes.Repeat([]byte("x"), 65000))
	exchange(t, a, b, addrOf(b), nil)
}

func TestIPv6AndDualStack(t *testing.T) {
	a, b := listen(t, "udp6", "[::1]:0"), listen(t, "udp6", "[::1]:0")
	exchange(t, a, b, addrOf(b), []byte("six"))
	// A dual-stack socket (AF_INET6) writes to and reads from IPv4 peers.
	d := listen(t, "udp", "[::]:0")
	v4 := listen(t, "udp4", "127.0.0.1:0")
	exchange(t, d, v4, addrOf(v4), []byte("to four"))
}

func TestIPv4SocketRefusesIPv6Destination(t *testing.T) {
	a := listen(t, "udp4", "127.0.0.1:0")
	if _, err := a.WriteToUDPAddrPort([]byte("x"), netip.MustParseAddrPort("[::1]:5060")); err == nil {
		t.Fatal("an IPv6 destination on an IPv4 socket was written")
	}
	if _, err := a.WriteToUDPAddrPort([]byte("x"), netip.AddrPort{}); err == nil {
		t.Fatal("no destination was written")
	}
}

func TestDeadlineAndClose(t *testing.T) {
	a := listen(t, "udp4", "127.0.0.1:0")
	if err := a.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, _, err := a.ReadFromUDPAddrPort(make([]byte, 10))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	if err := a.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := a.ReadFrom(make([]byte, 10))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	a.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a read blocked in the socket did not return after Close")
	}
	if _, err := a.WriteToUDPAddrPort([]byte("x"), netip.MustParseAddrPort("127.0.0.1:9")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v, want net.ErrClosed", err)
	}
}

func TestWrapLeavesOtherConnsAlone(t *testing.T) {
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if _, ok := Wrap(uc).(*Conn); !ok {
		t.Fatal("a *net.UDPConn was not wrapped")
	}
	var pc net.PacketConn = &struct{ net.PacketConn }{uc}
	if Wrap(pc) != pc {
		t.Fatal("another PacketConn was wrapped")
	}
}

func TestTapTakesDatagrams(t *testing.T) {
	a, b := listen(t, "udp4", "127.0.0.1:0"), listen(t, "udp4", "127.0.0.1:0")
	var tapped []string
	b.SetTap(func(d []byte, from netip.AddrPort) bool {
		if from.Port() != addrOf(a).Port() {
			t.Errorf("tap saw source %v", from)
		}
		if bytes.HasPrefix(d, []byte("SIP/2.0 ")) {
			tapped = append(tapped, string(d))
			return true
		}
		return false
	})
	for _, m := range []string{"SIP/2.0 200 OK", "NOTIFY sip:x SIP/2.0", "SIP/2.0 100 Trying"} {
		if _, err := a.WriteToUDPAddrPort([]byte(m), addrOf(b)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	n, _, err := b.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "NOTIFY sip:x SIP/2.0" {
		t.Fatalf("ReadFrom: %q %v, want the datagram the tap left", buf[:n], err)
	}
	if len(tapped) != 1 {
		t.Fatalf("tapped %q before the NOTIFY, want the 200", tapped)
	}
	b.SetTap(nil)
	n, _, err = b.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "SIP/2.0 100 Trying" {
		t.Fatalf("ReadFrom without a tap: %q %v", buf[:n], err)
	}
}
