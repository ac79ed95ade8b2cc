package store

import (
	"net"
	"runtime"
	"testing"
	"time"
)

// TestInBatchesLetsTheNetworkIn: with one processor, a goroutine waiting
// for a datagram that has arrived runs between two chunks of a long write,
// not after the whole write (a yield that keeps the writer runnable would
// leave the network unpolled).
func TestInBatchesLetsTheNetworkIn(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	got := make(chan struct{})
	go func() {
		buf := make([]byte, 64)
		if _, _, err := pc.ReadFrom(buf); err == nil {
			close(got)
		}
	}()
	// The reader parks in the network poller before the datagram comes:
	// only a poll of the network makes it runnable again.
	time.Sleep(5 * time.Millisecond)
	c, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	seenAt, i := -1, 0
	err = inBatches(make([]int, 4), 1, func([]int) error {
		select {
		case <-got:
			if seenAt < 0 {
				seenAt = i
			}
		default:
		}
		for start := time.Now(); time.Since(start) < 3*time.Millisecond; {
		}
		i++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seenAt < 0 || seenAt > 1 {
		t.Fatalf("the datagram's reader ran before chunk %d of 4, want before the second", seenAt)
	}
}
