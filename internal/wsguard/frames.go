package wsguard

import (
	"errors"
	"fmt"
)

// Reasons a connection is dropped; they label the drop counters.
const (
	ReasonHandshakeTimeout = "handshake_timeout"   // the TLS or HTTP upgrade did not end in time
	ReasonHandshakeTLS     = "tls_handshake"       // the TLS handshake failed
	ReasonHandshakeLarge   = "handshake_too_large" // the HTTP upgrade request is above MaxHandshakeBytes
	ReasonHandshakeInvalid = "handshake_invalid"   // not an HTTP GET upgrade request
	ReasonTooManyPending   = "too_many_handshakes" // MaxPending handshakes are running already
	ReasonFrameTooLarge    = "frame_too_large"     // a frame above MaxFrameSize
	ReasonFragmented       = "fragmented_frame"    // a fragmented message (continuation frames)
	ReasonBinary           = "binary_frame"        // a binary data frame
	ReasonControlPayload   = "control_payload"     // a ping or pong frame with a payload
	ReasonInvalidFrame     = "invalid_frame"       // unmasked, reserved bits or opcode, bad control frame
	ReasonFlood            = "frame_flood"         // more frames than FramesPerSecond allows
)

// DropError is the error a guarded connection fails with.
type DropError struct {
	// Reason is one of the Reason constants.
	Reason string
	// Detail says what was seen.
	Detail string
}

func (e *DropError) Error() string { return "wsguard: " + e.Reason + ": " + e.Detail }

func drop(reason, format string, args ...any) error {
	return &DropError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the drop reason of err, or "" when err is no DropError.
func ReasonOf(err error) string {
	var d *DropError
	if errors.As(err, &d) {
		return d.Reason
	}
	return ""
}

// frameScanner follows the frame headers of a client's byte stream (RFC
// 6455 §5.2) and refuses the frames the SIP transport behind it cannot
// read correctly. It keeps a 14-byte header and a payload count: bounded
// memory whatever the input.
type frameScanner struct {
	maxFrame uint64
	onFrame  func() error // called once per frame header (rate limit); nil: none

	hdr  [14]byte
	hn   int    // header bytes held
	left uint64 // payload bytes still to pass
}

// headerLen is the full length of a frame header whose first two bytes
// are b0 b1.
func headerLen(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// scan checks the next bytes of the stream.
func (f *frameScanner) scan(p []byte) error {
	for len(p) > 0 {
		if f.left > 0 {
			k := uint64(len(p))
			if k > f.left {
				k = f.left
			}
			f.left -= k
			p = p[k:]
			continue
		}
		f.hdr[f.hn] = p[0]
		f.hn++
		p = p[1:]
		if f.hn < 2 || f.hn < headerLen(f.hdr[1]) {
			continue
		}
		if err := f.frame(); err != nil {
			return err
		}
		f.hn = 0
	}
	return nil
}

// frame checks the complete header in f.hdr and sets the payload length.
func (f *frameScanner) frame() error {
	b0, b1 := f.hdr[0], f.hdr[1]
	fin, rsv, op := b0&0x80 != 0, b0&0x70, b0&0x0f
	if b1&0x80 == 0 {
		return drop(ReasonInvalidFrame, "unmasked client frame")
	}
	if rsv != 0 {
		return drop(ReasonInvalidFrame, "reserved bits %#x set", rsv>>4)
	}
	var n uint64
	switch l := b1 & 0x7f; l {
	case 126:
		n = uint64(f.hdr[2])<<8 | uint64(f.hdr[3])
	case 127:
		for i := 2; i < 10; i++ {
			n = n<<8 | uint64(f.hdr[i])
		}
		if n>>63 != 0 {
			return drop(ReasonInvalidFrame, "64-bit length with the top bit set")
		}
	default:
		n = uint64(l)
	}
	switch {
	case op >= 0x8 && op <= 0xa:
		if !fin || n > 125 {
			return drop(ReasonInvalidFrame, "control frame fragmented or above 125 bytes")
		}
		if op != 0x8 && n > 0 {
			return drop(ReasonControlPayload, "ping or pong with a %d-byte payload", n)
		}
	case op == 0x0:
		return drop(ReasonFragmented, "continuation frame")
	case op == 0x2:
		return drop(ReasonBinary, "binary frame of %d bytes", n)
	case op == 0x1:
		if !fin {
			return drop(ReasonFragmented, "text frame without FIN")
		}
		if n > f.maxFrame {
			return drop(ReasonFrameTooLarge, "text frame of %d bytes, above %d", n, f.maxFrame)
		}
	default:
		return drop(ReasonInvalidFrame, "reserved opcode %#x", op)
	}
	if f.onFrame != nil {
		if err := f.onFrame(); err != nil {
			return err
		}
	}
	f.left = n
	return nil
}
