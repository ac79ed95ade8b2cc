package ingest

import (
	"bytes"
	"errors"
	"net/netip"
	"strconv"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// statelessOKSipgo is statelessOK written with sipgo's own StringWrite
// methods: the reference statelessOK must match byte for byte.
func statelessOKSipgo(req *sip.Request, src netip.AddrPort) []byte {
	var b bytes.Buffer
	b.WriteString("SIP/2.0 200 OK\r\n")
	if req.Method != sip.REGISTER {
		for _, h := range req.GetHeaders("Record-Route") {
			h.StringWrite(&b)
			b.WriteString("\r\n")
		}
	}
	for i, h := range req.GetHeaders("Via") {
		if v, ok := h.(*sip.ViaHeader); ok && i == 0 {
			if val, exists := v.Params.Get("rport"); exists && val == "" {
				top := v.Clone()
				top.Params.Add("rport", strconv.Itoa(int(src.Port())))
				top.Params.Add("received", src.Addr().String())
				h = top
			}
		}
		h.StringWrite(&b)
		b.WriteString("\r\n")
	}
	if h := req.From(); h != nil {
		h.StringWrite(&b)
		b.WriteString("\r\n")
	}
	if h := req.To(); h != nil {
		h.StringWrite(&b)
		if !h.Params.Has("tag") {
			b.WriteString(";tag=")
			b.WriteString(strconv.FormatUint(replyTagSipgo(req), 16))
		}
		b.WriteString("\r\n")
	}
	if h := req.CallID(); h != nil {
		h.StringWrite(&b)
		b.WriteString("\r\n")
	}
	if h := req.CSeq(); h != nil {
		h.StringWrite(&b)
		b.WriteString("\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.Bytes()
}

func replyTagSipgo(req *sip.Request) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	mix := func(s string) {
		for i := 0; i < len(s); i++ {
			h = (h ^ uint64(s[i])) * prime
		}
		h = (h ^ 0xff) * prime
	}
	if c := req.CallID(); c != nil {
		mix(c.Value())
	}
	if f := req.From(); f != nil {
		t, _ := f.Params.Get("tag")
		mix(t)
	}
	if cs := req.CSeq(); cs != nil {
		mix(strconv.FormatUint(uint64(cs.SeqNo), 10))
	}
	return h
}

var statelessOKSeeds = []string{
	"REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport\r\n" +
		"Via: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bKb\r\n" +
		"From: \"Al ice\" <sip:alice:pw@example.com;transport=tcp?x=y>;tag=f1\r\n" +
		"To: <sip:alice@example.com>\r\n" +
		"Call-ID: c1@x\r\nCSeq: 7 REGISTER\r\nContact: <sip:alice@10.0.0.1>\r\nContent-Length: 0\r\n\r\n",
	"BYE sip:bob@10.0.0.9 SIP/2.0\r\n" +
		"v: SIP/2.0/TCP [2001:db8::1];branch=z9hG4bKc;rport;received=\"a b\", SIP/2.0/UDP 10.0.0.3:5060;branch=z9hG4bKd\r\n" +
		"f: \"Alice\" <sip:alice@example.com>;tag=f2\r\n" +
		"t: <sip:bob@[2001:db8::2]:5062>;tag=t2\r\n" +
		"i: c2@x\r\nCSeq: 2 BYE\r\nRecord-Route: <sip:10.0.0.5;lr>, <sip:10.0.0.6;lr>\r\nrecord-route: <sip:p;lr>\r\nl: 0\r\n\r\n",
	"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;rport=1;received=2.2.2.2\r\nFrom: sip:a@b\r\nTo: sip:c@d\r\nCall-ID: c3\r\nCSeq: 1 OPTIONS\r\n\r\n",
}

// checkStatelessOK compares statelessOK with the sipgo-written reference
// for raw (false when raw is not a request sipgo parses).
func checkStatelessOK(t *testing.T, raw string) bool {
	msg, err := parseOrPanic(raw)
	if err != nil {
		return false
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		return false
	}
	for _, src := range []netip.AddrPort{netip.MustParseAddrPort("192.0.2.7:5071"), netip.MustParseAddrPort("[2001:db8::9]:5080")} {
		if got, want := statelessOK(req, src), statelessOKSipgo(req, src); !bytes.Equal(got, want) {
			t.Fatalf("statelessOK\n%s\nsipgo-written\n%s", got, want)
		}
	}
	return true
}

func TestStatelessOKWritesLikeSipgo(t *testing.T) {
	for i, raw := range statelessOKSeeds {
		if !checkStatelessOK(t, raw) {
			t.Fatalf("seed %d is not a request", i)
		}
	}
}

func FuzzStatelessOK(f *testing.F) {
	for _, s := range statelessOKSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		checkStatelessOK(t, raw)
	})
}

// parseOrPanic parses raw with sipgo, a parser panic as an error (that
// panic is sipgo's, not the code under test).
func parseOrPanic(raw string) (msg sip.Message, err error) {
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, errors.New("sip parser panic")
		}
	}()
	return sip.NewParser().ParseSIP([]byte(raw))
}
