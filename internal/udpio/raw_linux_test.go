//go:build linux

package udpio

import (
	"net"
	"strconv"
	"testing"
	"time"
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

// TestReadWaited checks that ReadWaited tells a datagram that was already
// queued (false) from one the call had to wait for (true).
func TestReadWaited(t *testing.T) {
	a, b := listen(t, "udp4", "127.0.0.1:0"), listen(t, "udp4", "127.0.0.1:0")
	buf := make([]byte, 64)
	if _, err := a.WriteToUDPAddrPort([]byte("queued"), addrOf(b)); err != nil {
		t.Fatal(err)
	}
	// A loopback send has queued the datagram when it returns.
	n, _, waited, err := b.ReadWaited(buf)
	if err != nil || string(buf[:n]) != "queued" || waited {
		t.Fatalf("queued datagram: %q waited=%v err=%v", buf[:n], waited, err)
	}
	// The reader starts on an empty socket: it waits. Should the send
	// happen before it blocks, it reads without waiting; the send is
	// delayed a little more each time, a few times at most.
	for delay := 5 * time.Millisecond; ; delay *= 2 {
		type read struct {
			s      string
			waited bool
			err    error
		}
		got := make(chan read, 1)
		go func() {
			n, _, w, err := b.ReadWaited(buf)
			got <- read{string(buf[:n]), w, err}
		}()
		time.Sleep(delay)
		if _, err := a.WriteToUDPAddrPort([]byte("later"), addrOf(b)); err != nil {
			t.Fatal(err)
		}
		r := <-got
		if r.err != nil || r.s != "later" {
			t.Fatalf("later datagram: %q err=%v", r.s, r.err)
		}
		if r.waited {
			return
		}
		if delay > 500*time.Millisecond {
			t.Fatal("ReadWaited never reported a wait for a datagram sent after the read began")
		}
	}
}

// TestDatagramsAllocateNothing: a write and a read of a datagram, on an
// IPv4 and on a dual-stack socket, allocate nothing once the socket has
// been used (their call state is reused). Under the race detector, whose
// pools drop some of what they are given, a datagram may make the two
// call states anew, four allocations at most (nine before they were
// reused).
func TestDatagramsAllocateNothing(t *testing.T) {
	most := 0.0
	if raceEnabled {
		most = 4
	}
	for _, tc := range []struct{ network, addr string }{{"udp4", "127.0.0.1:0"}, {"udp", "[::]:0"}} {
		a, b := listen(t, tc.network, tc.addr), listen(t, "udp4", "127.0.0.1:0")
		to := addrOf(b)
		payload, buf := []byte("datagram"), make([]byte, 64)
		if err := b.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		allocs := testing.AllocsPerRun(50, func() {
			if _, err := a.WriteToUDPAddrPort(payload, to); err != nil {
				t.Fatal(err)
			}
			if n, _, err := b.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "datagram" {
				t.Fatalf("read %q, %v", buf[:n], err)
			}
		})
		if allocs > most {
			t.Errorf("%s: %v allocations a datagram written and read, want at most %v", tc.network, allocs, most)
		}
	}
}

// BenchmarkDatagram measures one loopback datagram written and read.
func BenchmarkDatagram(b *testing.B) {
	ua, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	ub, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	a, _ := New(ua)
	c, _ := New(ub)
	defer a.Close()
	defer c.Close()
	to := c.LocalAddr().(*net.UDPAddr).AddrPort()
	payload, buf := make([]byte, 600), make([]byte, 2048)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.WriteToUDPAddrPort(payload, to); err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
}
