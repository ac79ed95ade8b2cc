package puaxmpp

import (
	"errors"
	"io"
	"net"
	"testing"
)

// TestLimitConnBoundsAStanza: reads past the budget since the last stanza
// fail (ending the session) instead of buffering a huge stanza; a reset
// at each stanza gives a new budget.
func TestLimitConnBoundsAStanza(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &limitConn{Conn: a, budget: 100}
	go func() {
		chunk := make([]byte, 60)
		for i := 0; i < 10; i++ {
			if _, err := b.Write(chunk); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 60)
	read := func() error { _, err := io.ReadFull(c, buf); return err }
	if err := read(); err != nil {
		t.Fatal(err)
	}
	if err := read(); err != nil { // 120 bytes read: past the budget only now
		t.Fatal(err)
	}
	if err := read(); !errors.Is(err, ErrHostile) {
		t.Fatalf("read past the budget: %v", err)
	}
	c.reset()
	if err := read(); err != nil {
		t.Fatalf("after reset: %v", err)
	}
}
