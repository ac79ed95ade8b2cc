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
