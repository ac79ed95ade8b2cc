package ingest

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestStatelessOKMatchesTheRequest checks the hand-written 200 against
// what RFC 3261 §8.2.6 asks of a response (and what sipgo's own response
// builder copies): every Via in order, rport/received on the top one when
// asked, From, To with a tag, Call-ID, CSeq, no body.
func TestStatelessOKMatchesTheRequest(t *testing.T) {
	src := netip.MustParseAddrPort("192.0.2.7:5071")
	cases := []struct {
		name, req  string
		wantTopVia string
		toTag      string // "" = generated
	}{
		{"rport asked", "REGISTER sip:example.com SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport\r\n" +
			"Via: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bKb\r\n" +
			"From: <sip:alice@example.com>;tag=f1\r\n" +
			"To: <sip:alice@example.com>\r\n" +
			"Call-ID: c1@x\r\nCSeq: 7 REGISTER\r\nContact: <sip:alice@10.0.0.1>\r\nContent-Length: 0\r\n\r\n",
			"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport=5071;received=192.0.2.7", ""},
		{"no rport, To tagged", "BYE sip:bob@10.0.0.9 SIP/2.0\r\n" +
			"v: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bKc, SIP/2.0/UDP 10.0.0.3:5060;branch=z9hG4bKd\r\n" +
			"f: \"Alice\" <sip:alice@example.com>;tag=f2\r\n" +
			"t: <sip:bob@example.com>;tag=t2\r\n" +
			"i: c2@x\r\nCSeq: 2 BYE\r\nRecord-Route: <sip:10.0.0.5;lr>\r\nl: 0\r\n\r\n",
			"SIP/2.0/TCP 10.0.0.1;branch=z9hG4bKc", "t2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := sip.NewParser().ParseSIP([]byte(tc.req))
			if err != nil {
				t.Fatal(err)
			}
			req := msg.(*sip.Request)
			raw := statelessOK(req, src)
			got, err := sip.NewParser().ParseSIP(raw)
			if err != nil {
				t.Fatalf("reply does not parse: %v\n%s", err, raw)
			}
			res, ok := got.(*sip.Response)
			if !ok || res.StatusCode != 200 {
				t.Fatalf("not a 200: %s", raw)
			}
			vias, reqVias := res.GetHeaders("Via"), req.GetHeaders("Via")
			if len(vias) != len(reqVias) || vias[0].Value() != tc.wantTopVia {
				t.Fatalf("Vias %v, want %d with top %q", vias, len(reqVias), tc.wantTopVia)
			}
			for i := 1; i < len(vias); i++ {
				if vias[i].Value() != reqVias[i].Value() {
					t.Fatalf("Via %d: %q, want %q", i, vias[i].Value(), reqVias[i].Value())
				}
			}
			if res.From().Value() != req.From().Value() || res.CallID().Value() != req.CallID().Value() ||
				res.CSeq().Value() != req.CSeq().Value() {
				t.Fatalf("From/Call-ID/CSeq not copied:\n%s", raw)
			}
			if res.To().Address.String() != req.To().Address.String() {
				t.Fatalf("To %q, want the request's %q", res.To().Value(), req.To().Value())
			}
			tag, _ := res.To().Params.Get("tag")
			if tag == "" || (tc.toTag != "" && tag != tc.toTag) {
				t.Fatalf("To tag %q, want %q (or a generated one)", tag, tc.toTag)
			}
			rr, reqRR := res.GetHeaders("Record-Route"), req.GetHeaders("Record-Route")
			if req.Method == sip.REGISTER && len(rr) != 0 || req.Method != sip.REGISTER && len(rr) != len(reqRR) {
				t.Fatalf("Record-Route %v for a %s with %v", rr, req.Method, reqRR)
			}
			if len(res.Body()) != 0 || res.GetHeader("Contact") != nil || !strings.HasSuffix(string(raw), "Content-Length: 0\r\n\r\n") {
				t.Fatalf("reply carries more than asked:\n%s", raw)
			}
			// The same copy again (a retransmission) gets the same tag.
			again, _ := sip.NewParser().ParseSIP(statelessOK(req, src))
			if tag2, _ := again.(*sip.Response).To().Params.Get("tag"); tag2 != tag {
				t.Fatalf("retransmission answered with tag %q, first %q", tag2, tag)
			}
		})
	}
}

func BenchmarkStatelessOK(b *testing.B) {
	msg, err := sip.NewParser().ParseSIP([]byte("REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport\r\n" +
		"From: <sip:alice@example.com>;tag=f1\r\nTo: <sip:alice@example.com>\r\n" +
		"Call-ID: c1@x\r\nCSeq: 7 REGISTER\r\nContact: <sip:alice@10.0.0.1>\r\nContent-Length: 0\r\n\r\n"))
	if err != nil {
		b.Fatal(err)
	}
	req := msg.(*sip.Request)
	src := netip.MustParseAddrPort("192.0.2.7:5071")
	b.ReportAllocs()
	for b.Loop() {
		statelessOK(req, src)
	}
}
