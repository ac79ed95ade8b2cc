package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// HEP decoding errors. DecodeHEP wraps them with the offending offset or
// value; test with errors.Is.
var (
	// ErrShortPacket: fewer bytes than the header or the total length says.
	ErrShortPacket = errors.New("hep: short packet")
	// ErrNotHEP3: the packet does not start with "HEP3".
	ErrNotHEP3 = errors.New("hep: not a HEPv3 packet")
	// ErrTotalLength: the total-length field does not match the packet size.
	ErrTotalLength = errors.New("hep: total length mismatch")
	// ErrChunkLength: a chunk length is below 6 or runs past the packet end.
	ErrChunkLength = errors.New("hep: bad chunk length")
	// ErrChunkValue: a fixed-size chunk has the wrong size or a bad value.
	ErrChunkValue = errors.New("hep: bad chunk value")
	// ErrNoPayload: the packet carries no payload chunk.
	ErrNoPayload = errors.New("hep: no payload")
	// ErrCompressed: the payload is compressed (chunk 0x0010), unsupported.
	ErrCompressed = errors.New("hep: compressed payload not supported")
)

// HEP protocol types (chunk 0x000b) of interest.
const (
	// HEPProtoSIP is the protocol type of a SIP payload.
	HEPProtoSIP = 1
)

// hepHeaderLen is the size of the "HEP3" magic plus the total length.
const hepHeaderLen = 6

// HEPPacket is a decoded HEPv3 packet.
type HEPPacket struct {
	// Family is the IP family chunk: 2 (IPv4) or 10 (IPv6), 0 if absent.
	Family uint8
	// IPProto is the IP protocol id (17 UDP, 6 TCP, 132 SCTP, 22 for TLS/WS).
	IPProto uint8
	// Src and Dst are the original addresses of the captured message
	// (invalid when the packet has no address chunks).
	Src, Dst netip.AddrPort
	// Time is the capture time (zero when the packet has no timestamp).
	Time time.Time
	// ProtoType is the payload protocol type (HEPProtoSIP = 1).
	ProtoType uint8
	// CaptureID is the capture agent id.
	CaptureID uint32
	// AuthKey is the auth key chunk, empty if absent.
	AuthKey string
	// CorrelationID is the correlation id chunk (Kamailio: the Call-ID or
	// the sip_trace() argument), empty if absent.
	CorrelationID string
	// Payload is the captured message. It aliases the decoded buffer.
	Payload []byte
}

// DecodeHEP decodes one HEPv3 packet occupying exactly b. Vendor chunks
// (vendor id not 0) and unknown generic chunks are skipped. Every length is
// checked against the buffer, so any input yields a packet or an error.
func DecodeHEP(b []byte) (*HEPPacket, error) {
	if len(b) < hepHeaderLen {
		return nil, fmt.Errorf("%w: %d bytes", ErrShortPacket, len(b))
	}
	if string(b[:4]) != "HEP3" {
		if b[0] == 1 || b[0] == 2 {
			return nil, fmt.Errorf("%w: version %d (configure HEP version 3)", ErrNotHEP3, b[0])
		}
		return nil, ErrNotHEP3
	}
	total := int(binary.BigEndian.Uint16(b[4:6]))
	if total < hepHeaderLen {
		return nil, fmt.Errorf("%w: total length %d", ErrTotalLength, total)
	}
	if total > len(b) {
		return nil, fmt.Errorf("%w: total length %d, have %d bytes", ErrShortPacket, total, len(b))
	}
	if total != len(b) {
		return nil, fmt.Errorf("%w: total length %d, packet %d bytes", ErrTotalLength, total, len(b))
	}
	var (
		p                   HEPPacket
		src4, dst4          netip.Addr
		src6, dst6          netip.Addr
		sport, dport        uint16
		tsSec, tsUsec       uint32
		hasTime, hasPayload bool
	)
	for off := hepHeaderLen; off < total; {
		if total-off < 6 {
			return nil, fmt.Errorf("%w: %d trailing bytes at offset %d", ErrChunkLength, total-off, off)
		}
		vendor := binary.BigEndian.Uint16(b[off:])
		typ := binary.BigEndian.Uint16(b[off+2:])
		clen := int(binary.BigEndian.Uint16(b[off+4:]))
		if clen < 6 || clen > total-off {
			return nil, fmt.Errorf("%w: chunk type 0x%04x length %d at offset %d", ErrChunkLength, typ, clen, off)
		}
		body := b[off+6 : off+clen]
		off += clen
		if vendor != 0 {
			continue
		}
		var err error
		switch typ {
		case 0x01:
			p.Family, err = chunkU8(typ, body)
		case 0x02:
			p.IPProto, err = chunkU8(typ, body)
		case 0x03:
			src4, err = chunkAddr(typ, body, 4)
		case 0x04:
			dst4, err = chunkAddr(typ, body, 4)
		case 0x05:
			src6, err = chunkAddr(typ, body, 16)
		case 0x06:
			dst6, err = chunkAddr(typ, body, 16)
		case 0x07:
			sport, err = chunkU16(typ, body)
		case 0x08:
			dport, err = chunkU16(typ, body)
		case 0x09:
			tsSec, err = chunkU32(typ, body)
			hasTime = true
		case 0x0a:
			tsUsec, err = chunkU32(typ, body)
		case 0x0b:
			p.ProtoType, err = chunkU8(typ, body)
		case 0x0c:
			p.CaptureID, err = chunkU32(typ, body)
		case 0x0e:
			p.AuthKey = string(body)
		case 0x0f:
			p.Payload = body
			hasPayload = true
		case 0x10:
			return nil, ErrCompressed
		case 0x11:
			p.CorrelationID = string(body)
		}
		if err != nil {
			return nil, err
		}
	}
	if !hasPayload {
		return nil, ErrNoPayload
	}
	src, dst := src4, dst4
	if p.Family == 10 || (!src.IsValid() && src6.IsValid()) {
		src, dst = src6, dst6
	}
	if src.IsValid() {
		p.Src = netip.AddrPortFrom(src, sport)
	}
	if dst.IsValid() {
		p.Dst = netip.AddrPortFrom(dst, dport)
	}
	if hasTime {
		if tsUsec >= 1000000 {
			return nil, fmt.Errorf("%w: microseconds %d", ErrChunkValue, tsUsec)
		}
		p.Time = time.Unix(int64(tsSec), int64(tsUsec)*1000).UTC()
	}
	return &p, nil
}

func chunkU8(typ uint16, body []byte) (uint8, error) {
	if len(body) != 1 {
		return 0, fmt.Errorf("%w: chunk type 0x%04x has %d bytes, want 1", ErrChunkValue, typ, len(body))
	}
	return body[0], nil
}

func chunkU16(typ uint16, body []byte) (uint16, error) {
	if len(body) != 2 {
		return 0, fmt.Errorf("%w: chunk type 0x%04x has %d bytes, want 2", ErrChunkValue, typ, len(body))
	}
	return binary.BigEndian.Uint16(body), nil
}

func chunkU32(typ uint16, body []byte) (uint32, error) {
	if len(body) != 4 {
		return 0, fmt.Errorf("%w: chunk type 0x%04x has %d bytes, want 4", ErrChunkValue, typ, len(body))
	}
	return binary.BigEndian.Uint32(body), nil
}

func chunkAddr(typ uint16, body []byte, n int) (netip.Addr, error) {
	if len(body) != n {
		return netip.Addr{}, fmt.Errorf("%w: chunk type 0x%04x has %d bytes, want %d", ErrChunkValue, typ, len(body), n)
	}
	a, _ := netip.AddrFromSlice(body)
	return a, nil
}

// ErrHEPTooLarge: a packet given to AppendHEP does not fit HEPv3's 16-bit
// lengths.
var ErrHEPTooLarge = errors.New("hep: packet too large for HEPv3")

// AppendHEP appends p encoded as one HEPv3 packet to b, as a capture agent
// (Kamailio's siptrace) sends it: the address family (from Src, IPv4
// unless Src is IPv6), protocol, addresses and ports, the timestamp when
// p.Time is set, the protocol type, the capture id, the auth key and
// correlation id when not empty, and the payload. DecodeHEP reads back
// what AppendHEP wrote; load tools and tests use it to play a capture
// agent.
func AppendHEP(b []byte, p *HEPPacket) ([]byte, error) {
	start := len(b)
	b = append(b, "HEP3\x00\x00"...)
	u8 := func(typ uint16, v uint8) { b = appendChunk(b, typ, []byte{v}) }
	u16 := func(typ uint16, v uint16) { b = appendChunk(b, typ, binary.BigEndian.AppendUint16(nil, v)) }
	u32 := func(typ uint16, v uint32) { b = appendChunk(b, typ, binary.BigEndian.AppendUint32(nil, v)) }
	v6 := p.Src.Addr().Is6() && !p.Src.Addr().Is4In6()
	if v6 {
		u8(0x01, 10)
	} else {
		u8(0x01, 2)
	}
	u8(0x02, p.IPProto)
	if p.Src.IsValid() && p.Dst.IsValid() {
		if v6 {
			s, d := p.Src.Addr().As16(), p.Dst.Addr().As16()
			b = appendChunk(b, 0x05, s[:])
			b = appendChunk(b, 0x06, d[:])
		} else {
			s, d := p.Src.Addr().Unmap().As4(), p.Dst.Addr().Unmap().As4()
			b = appendChunk(b, 0x03, s[:])
			b = appendChunk(b, 0x04, d[:])
		}
		u16(0x07, p.Src.Port())
		u16(0x08, p.Dst.Port())
	}
	if !p.Time.IsZero() {
		u32(0x09, uint32(p.Time.Unix()))
		u32(0x0a, uint32(p.Time.Nanosecond()/1000))
	}
	u8(0x0b, p.ProtoType)
	u32(0x0c, p.CaptureID)
	if p.AuthKey != "" {
		b = appendChunk(b, 0x0e, []byte(p.AuthKey))
	}
	if p.CorrelationID != "" {
		b = appendChunk(b, 0x11, []byte(p.CorrelationID))
	}
	b = appendChunk(b, 0x0f, p.Payload)
	n := len(b) - start
	if n > 0xffff || len(p.Payload)+6 > 0xffff || len(p.AuthKey)+6 > 0xffff || len(p.CorrelationID)+6 > 0xffff {
		return b[:start], fmt.Errorf("%w: %d bytes", ErrHEPTooLarge, n)
	}
	binary.BigEndian.PutUint16(b[start+4:], uint16(n))
	return b, nil
}

// appendChunk appends one generic (vendor 0) chunk.
func appendChunk(b []byte, typ uint16, body []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint16(b, uint16(min(6+len(body), 0xffff)))
	return append(b, body...)
}
