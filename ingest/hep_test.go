package ingest

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type hepJSON struct {
	TotalLen int `json:"total_len"`
	Chunks   []struct {
		Vendor int             `json:"vendor"`
		Type   int             `json:"type"`
		Name   string          `json:"name"`
		Len    int             `json:"len"`
		Value  json.RawMessage `json:"value"`
	} `json:"chunks"`
}

// TestDecodeHEPSamples decodes every captured Kamailio HEPv3 packet and
// compares it with its JSON decode and with the SIP message captured.
func TestDecodeHEPSamples(t *testing.T) {
	bins, _ := filepath.Glob("testdata/hep/*.hep.bin")
	if len(bins) == 0 {
		t.Fatal("no HEP samples")
	}
	for _, bin := range bins {
		base := strings.TrimSuffix(bin, ".hep.bin")
		t.Run(filepath.Base(base), func(t *testing.T) {
			raw, err := os.ReadFile(bin)
			if err != nil {
				t.Fatal(err)
			}
			jb, err := os.ReadFile(base + ".hep.json")
			if err != nil {
				t.Fatal(err)
			}
			var want hepJSON
			if err := json.Unmarshal(jb, &want); err != nil {
				t.Fatal(err)
			}
			p, err := DecodeHEP(raw)
			if err != nil {
				t.Fatalf("DecodeHEP: %v", err)
			}
			if want.TotalLen != len(raw) {
				t.Fatalf("total_len %d, packet %d bytes", want.TotalLen, len(raw))
			}
			var srcIP, dstIP string
			var sport, dport uint16
			var sec, usec int64
			for _, c := range want.Chunks {
				var n int64
				var s string
				_ = json.Unmarshal(c.Value, &n)
				_ = json.Unmarshal(c.Value, &s)
				switch c.Name {
				case "ip_family":
					check(t, c.Name, int64(p.Family), n)
				case "ip_proto":
					check(t, c.Name, int64(p.IPProto), n)
				case "src_ip4", "src_ip6":
					srcIP = s
				case "dst_ip4", "dst_ip6":
					dstIP = s
				case "src_port":
					sport = uint16(n)
				case "dst_port":
					dport = uint16(n)
				case "ts_sec":
					sec = n
				case "ts_usec":
					usec = n
				case "proto_type":
					check(t, c.Name, int64(p.ProtoType), n)
				case "capture_id":
					check(t, c.Name, int64(p.CaptureID), n)
				case "correlation_id":
					check(t, c.Name, p.CorrelationID, s)
				case "payload":
					check(t, c.Name, string(p.Payload), s)
				}
			}
			check(t, "src", p.Src, netip.AddrPortFrom(netip.MustParseAddr(srcIP), sport))
			check(t, "dst", p.Dst, netip.AddrPortFrom(netip.MustParseAddr(dstIP), dport))
			check(t, "time", p.Time, time.Unix(sec, usec*1000).UTC())
			if sip := wireBytes(t, base+".sip.txt"); !bytes.Equal(sip, p.Payload) {
				t.Fatalf("payload differs from %s.sip.txt:\n%q\n%q", base, p.Payload, sip)
			}
			m, err := parseMirror(testParser(), p.Payload)
			if err != nil {
				t.Fatalf("payload does not parse: %v", err)
			}
			if p.CorrelationID != "" && p.CorrelationID != m.callID {
				t.Fatalf("correlation id %q, Call-ID %q", p.CorrelationID, m.callID)
			}
		})
	}
}

func check[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

// hepBuilder builds HEP packets for the error cases.
type hepBuilder struct{ chunks []byte }

func (b *hepBuilder) chunk(vendor, typ uint16, body []byte) *hepBuilder {
	var h [6]byte
	binary.BigEndian.PutUint16(h[0:], vendor)
	binary.BigEndian.PutUint16(h[2:], typ)
	binary.BigEndian.PutUint16(h[4:], uint16(6+len(body)))
	b.chunks = append(append(b.chunks, h[:]...), body...)
	return b
}

func (b *hepBuilder) bytes() []byte {
	out := []byte("HEP3\x00\x00")
	binary.BigEndian.PutUint16(out[4:], uint16(6+len(b.chunks)))
	return append(out, b.chunks...)
}

func u16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func TestDecodeHEPErrors(t *testing.T) {
	payload := []byte("OPTIONS sip:a@b SIP/2.0\r\n\r\n")
	good := func() *hepBuilder {
		return (&hepBuilder{}).chunk(0, 0x0f, payload)
	}
	withLen := func(b []byte, n uint16) []byte {
		binary.BigEndian.PutUint16(b[4:], n)
		return b
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrShortPacket},
		{"five bytes", []byte("HEP3\x00"), ErrShortPacket},
		{"bad magic", []byte("HEP4\x00\x06"), ErrNotHEP3},
		{"hep v2", append([]byte{2, 16, 2, 17}, make([]byte, 20)...), ErrNotHEP3},
		{"total below header", withLen(good().bytes(), 3), ErrTotalLength},
		{"total beyond packet", withLen(good().bytes(), 200), ErrShortPacket},
		{"trailing garbage", append(good().bytes(), 0), ErrTotalLength},
		{"chunk length 5", (&hepBuilder{chunks: []byte{0, 0, 0, 0x0f, 0, 5}}).bytes(), ErrChunkLength},
		{"chunk past end", (&hepBuilder{chunks: []byte{0, 0, 0, 0x0f, 0, 50, 'x'}}).bytes(), ErrChunkLength},
		{"truncated chunk header", (&hepBuilder{chunks: []byte{0, 0, 0}}).bytes(), ErrChunkLength},
		{"ipv4 of 3 bytes", good().chunk(0, 3, []byte{1, 2, 3}).bytes(), ErrChunkValue},
		{"port of 4 bytes", good().chunk(0, 7, u32(1)).bytes(), ErrChunkValue},
		{"capture id of 2 bytes", good().chunk(0, 12, u16(1)).bytes(), ErrChunkValue},
		{"usec out of range", good().chunk(0, 9, u32(1)).chunk(0, 10, u32(1000000)).bytes(), ErrChunkValue},
		{"no payload", (&hepBuilder{}).chunk(0, 11, []byte{1}).bytes(), ErrNoPayload},
		{"compressed", (&hepBuilder{}).chunk(0, 0x10, []byte("x")).bytes(), ErrCompressed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := DecodeHEP(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v (packet %+v)", err, tt.want, p)
			}
		})
	}
}

func TestDecodeHEPIPv6VendorAndUnknownChunks(t *testing.T) {
	src := netip.MustParseAddr("2001:db8::1")
	dst := netip.MustParseAddr("2001:db8::2")
	b := (&hepBuilder{}).
		chunk(0x0003, 0x0001, []byte("opensips vendor chunk")).
		chunk(0, 0x0001, []byte{10}).
		chunk(0, 0x0002, []byte{6}).
		chunk(0, 0x0005, src.AsSlice()).
		chunk(0, 0x0006, dst.AsSlice()).
		chunk(0, 0x0007, u16(5060)).
		chunk(0, 0x0008, u16(5070)).
		chunk(0, 0x0013, []byte("node-name")).
		chunk(0, 0x0063, []byte("unknown")).
		chunk(0, 0x000b, []byte{1}).
		chunk(0, 0x000c, u32(70000)).
		chunk(0, 0x000e, []byte("secret")).
		chunk(0, 0x0011, []byte("corr")).
		chunk(0, 0x000f, []byte("x")).bytes()
	p, err := DecodeHEP(b)
	if err != nil {
		t.Fatal(err)
	}
	check(t, "src", p.Src, netip.AddrPortFrom(src, 5060))
	check(t, "dst", p.Dst, netip.AddrPortFrom(dst, 5070))
	check(t, "family", p.Family, 10)
	check(t, "ipproto", p.IPProto, 6)
	check(t, "capture id", p.CaptureID, 70000)
	check(t, "auth", p.AuthKey, "secret")
	check(t, "corr", p.CorrelationID, "corr")
	check(t, "payload", string(p.Payload), "x")
	check(t, "time", p.Time.IsZero(), true)
}

// TestAppendHEPRoundTrip: what AppendHEP writes, DecodeHEP reads back, for
// IPv4 and IPv6 captures; a payload too large for HEPv3 is an error.
func TestAppendHEPRoundTrip(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 891000, time.UTC)
	for _, in := range []HEPPacket{
		{Family: 2, IPProto: 17, Src: netip.MustParseAddrPort("10.0.0.1:5060"), Dst: netip.MustParseAddrPort("10.0.0.2:5070"),
			Time: at, ProtoType: HEPProtoSIP, CaptureID: 7, AuthKey: "k", CorrelationID: "c1", Payload: []byte("REGISTER sip:x SIP/2.0\r\n\r\n")},
		{Family: 10, IPProto: 6, Src: netip.MustParseAddrPort("[2001:db8::1]:5060"), Dst: netip.MustParseAddrPort("[2001:db8::2]:5061"),
			ProtoType: HEPProtoSIP, Payload: []byte("SIP/2.0 200 OK\r\n\r\n")},
	} {
		b, err := AppendHEP([]byte("prefix"), &in)
		if err != nil {
			t.Fatal(err)
		}
		if string(b[:6]) != "prefix" {
			t.Fatalf("AppendHEP overwrote the prefix: %q", b[:6])
		}
		got, err := DecodeHEP(b[6:])
		if err != nil {
			t.Fatal(err)
		}
		if got.Family != in.Family || got.IPProto != in.IPProto || got.Src != in.Src || got.Dst != in.Dst || !got.Time.Equal(in.Time) ||
			got.ProtoType != in.ProtoType || got.CaptureID != in.CaptureID || got.AuthKey != in.AuthKey ||
			got.CorrelationID != in.CorrelationID || string(got.Payload) != string(in.Payload) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, in)
		}
	}
	if b, err := AppendHEP([]byte("x"), &HEPPacket{Payload: make([]byte, 70000)}); !errors.Is(err, ErrHEPTooLarge) || string(b) != "x" {
		t.Errorf("AppendHEP of 70,000 bytes = %d bytes, %v; want ErrHEPTooLarge and b unchanged", len(b), err)
	}
}
