package ingest

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// FuzzParseMirror feeds raw bytes to the SIP copy pipeline: the datagram
// parser, the reply builder and the TCP framer must never panic, and
// whatever they accept must carry the basic headers.
func FuzzParseMirror(f *testing.F) {
	files, _ := filepath.Glob("testdata/siptrace/*.sip.txt")
	for _, p := range files[:min(len(files), 12)] {
		f.Add(wireBytes(f, p))
	}
	f.Add([]byte("REGISTER sip:a SIP/2.0\r\nl: 5\r\n\r\nabc"))
	p := sip.NewParser()
	p.MaxMessageLength = 65535
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseMirror(p, b)
		if err == nil {
			if m.callID == "" || m.msg.Via() == nil || m.msg.From() == nil || m.msg.To() == nil || m.msg.CSeq() == nil {
				t.Fatalf("accepted a copy without basic headers: %q", b)
			}
			if m.req != nil {
				if res := statelessOK(m.req, netip.MustParseAddrPort("127.0.0.1:5060")); len(res) == 0 {
					t.Fatal("empty reply")
				}
			}
			_ = m.orderKey()
		}
		r := bufio.NewReaderSize(bytes.NewReader(b), 16)
		for i := 0; i < 64; i++ {
			frame, err := readSIPFrame(r, 4096, nil)
			if err != nil {
				break
			}
			if len(frame) > 4096 {
				t.Fatalf("frame of %d bytes over the bound", len(frame))
			}
			_, _ = parseMirror(p, frame)
		}
	})
}

// FuzzDecodeHEP checks that DecodeHEP never panics, that a decoded payload
// lies inside the packet, and that the TCP framer agrees on the length.
func FuzzDecodeHEP(f *testing.F) {
	bins, _ := filepath.Glob("testdata/hep/*.hep.bin")
	for _, p := range bins[:min(len(bins), 8)] {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("HEP3\x00\x06"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeHEP(b)
		if err == nil {
			if len(p.Payload) > len(b) {
				t.Fatal("payload longer than the packet")
			}
			fr, err := readHEPFrame(bufio.NewReader(bytes.NewReader(b)), 65535, nil)
			if err != nil || !bytes.Equal(fr, b) {
				t.Fatalf("framer disagrees with decoder: %v", err)
			}
			_, _ = parseMirror(sip.NewParser(), p.Payload)
		}
	})
}

// FuzzEventsJSON checks that any body gets an answer without a panic and
// that an accepted event carries its key fields.
func FuzzEventsJSON(f *testing.F) {
	for _, s := range []string{
		`{"type":"registration","aor":"sip:alice@example.com","contacts":[{"uri":"sip:alice@1.2.3.4:5060","expires":3600,"q":0.5,"callid":"x"}],"complete":true}`,
		`[{"type":"dialog","call_id":"c","from_tag":"f","state":"early","code":180}]`,
		`{"jsonrpc":"2.0","method":"E_UL_CONTACT_INSERT","params":{"aor":"a","uri":"sip:a@b","qval":-1,"expires":1695054721,"cseq":1}}`,
		`{"event":"E_DLG_STATE_CHANGED","params":{"callid":"c","new_state":4}}`,
	} {
		f.Add([]byte(s))
	}
	in, err := New(testConfig(), Handlers{}, Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		qs, err := in.parseEvents(b)
		if err != nil {
			return
		}
		for _, q := range qs {
			switch {
			case q.it == nil:
			case q.it.reg != nil && q.it.reg.AoR == "":
				t.Fatalf("registration without AoR from %q", b)
			case q.it.dlg != nil && q.it.dlg.CallID == "":
				t.Fatalf("dialog without Call-ID from %q", b)
			}
		}
	})
}
