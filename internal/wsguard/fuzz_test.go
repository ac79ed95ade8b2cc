package wsguard

import (
	"bytes"
	"net"
	"testing"
)

// FuzzFrameScanner feeds arbitrary streams to the frame checker, whole and
// one byte at a time: it never panics, and both ways end the same.
func FuzzFrameScanner(f *testing.F) {
	f.Add(frame(0x81, 20, true))
	f.Add(append(frame(0x81, 300, true), frame(0x88, 2, true)...))
	f.Add(frame(0x81, 1<<40, false))
	f.Add(frame(0x82, 3, true))
	f.Add([]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'})
	f.Fuzz(func(t *testing.T, b []byte) {
		whole := frameScanner{maxFrame: 1000}
		e1 := whole.scan(b)
		bytewise := frameScanner{maxFrame: 1000}
		var e2 error
		for i := range b {
			if e2 = bytewise.scan(b[i : i+1]); e2 != nil {
				break
			}
		}
		if ReasonOf(e1) != ReasonOf(e2) || (e1 == nil) != (e2 == nil) {
			t.Fatalf("whole: %v, byte by byte: %v", e1, e2)
		}
		if e1 == nil && (whole.hn != bytewise.hn || whole.left != bytewise.left || !bytes.Equal(whole.hdr[:], bytewise.hdr[:])) {
			t.Fatal("states differ")
		}
	})
}

// FuzzReadRequest checks the upgrade request reader on arbitrary input.
func FuzzReadRequest(f *testing.F) {
	f.Add([]byte(upgrade))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\n\r\n"))
	f.Add(append([]byte(upgrade), frame(0x81, 3, true)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, rest, err := readRequest(&byteConn{r: bytes.NewReader(b)}, 512)
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if len(req) > 512+len(rest) || !bytes.HasSuffix(req, []byte("\r\n\r\n")) || !bytes.HasPrefix(req, []byte("GET ")) {
			t.Fatalf("request %q", req)
		}
		if !bytes.HasPrefix(b, append(append([]byte(nil), req...), rest...)) {
			t.Fatal("request and rest are not the input")
		}
	})
}

// byteConn is a net.Conn reading from r in small pieces.
type byteConn struct {
	net.Conn
	r *bytes.Reader
}

func (c *byteConn) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), 7)]) }
