package sipwrite

import (
	"errors"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// checkLikeSipgo parses raw and checks that every Via, From, To and
// Contact (and the Request-URI) is written as sipgo writes it; false when
// sipgo does not parse raw.
func checkLikeSipgo(t *testing.T, raw string) bool {
	t.Helper()
	msg, err := parseOrPanic(raw)
	if err != nil {
		return false
	}
	if req, ok := msg.(*sip.Request); ok {
		if got, want := string(AppendURI(nil, &req.Recipient)), req.Recipient.String(); got != want {
			t.Fatalf("Request-URI %q, sipgo %q", got, want)
		}
	}
	for _, h := range msg.(interface{ Headers() []sip.Header }).Headers() {
		var got string
		switch v := h.(type) {
		case *sip.ViaHeader:
			got = string(AppendViaValue(nil, v, v.Params))
		case *sip.FromHeader:
			got = string(AppendNameAddr(nil, v.DisplayName, &v.Address, v.Params))
		case *sip.ToHeader:
			got = string(AppendNameAddr(nil, v.DisplayName, &v.Address, v.Params))
		case *sip.ContactHeader:
			if v.Address.Wildcard {
				continue
			}
			if u, want := string(AppendURI(nil, &v.Address)), v.Address.String(); u != want || URILen(&v.Address) != len(want) {
				t.Fatalf("Contact URI %q (len %d), sipgo %q", u, URILen(&v.Address), want)
			}
			continue
		default:
			continue
		}
		if want := h.Value(); got != want {
			t.Fatalf("%s %q, sipgo %q", h.Name(), got, want)
		}
	}
	return true
}

func TestWritesLikeSipgo(t *testing.T) {
	for i, raw := range seeds {
		if !checkLikeSipgo(t, raw) {
			t.Fatalf("seed %d does not parse", i)
		}
	}
}

var seeds = []string{
	"REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport\r\n" +
		"Via: SIP/2.0/TCP [2001:db8::1]:5062;branch=z9hG4bKb;received=\"a b\"\r\n" +
		"From: \"Alice A\" <sip:alice:pw@example.com:5070;transport=tcp;lr?subject=x&h=y>;tag=f1\r\n" +
		"To: <sips:alice@[2001:db8::2]>\r\n" +
		"Call-ID: c1@x\r\nCSeq: 7 REGISTER\r\n" +
		"Contact: <sip:alice@10.0.0.1;ob>;expires=60, <tel:+123456>;q=0.5\r\n" +
		"Contact: <sip:[fe80::1%25eth0]>\r\nContent-Length: 0\r\n\r\n",
	"INVITE sip:bob@[::ffff:10.0.0.1]:5060 SIP/2.0\r\n" +
		"v: SIP/2.0/UDP host.example.com;branch=z9hG4bKc, SIP/2.0/UDP 10.0.0.3:5060;branch=z9hG4bKd\r\nVia: SIP/2.0/UDP [::ffff:10.0.0.1]:5060;branch=z9hG4bKf\r\n" +
		"f: <sip:a@b>;tag=x\r\nt: sip:bob@example.com\r\ni: c2\r\nCSeq: 1 INVITE\r\n" +
		"m: *\r\nl: 0\r\n\r\n",
	"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP " + strings.Repeat("a", 50) + ";branch=z9hG4bKe\r\n" +
		"From: <sip:[0000:0000:0000:0000:0000:0000:0000:0001]>;tag=1\r\nTo: <urn:service:sos>\r\n" +
		"Call-ID: c3\r\nCSeq: 2 REGISTER\r\nContact: <sip:u@h>;expires=0\r\n\r\n",
}

func FuzzWritesLikeSipgo(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		checkLikeSipgo(t, raw)
	})
}

func BenchmarkAppendNameAddr(b *testing.B) {
	msg, err := sip.NewParser().ParseSIP([]byte(seeds[0]))
	if err != nil {
		b.Fatal(err)
	}
	from := msg.From()
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendNameAddr(buf[:0], from.DisplayName, &from.Address, from.Params)
	}
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

func TestSameName(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"Via", "via", true}, {"X-Siptrace-Fromip", "x-siptrace-FROMIP", true}, {"Via", "Vias", false},
		{"User-Agent", "User_Agent", false}, {"\u212aey", "key", false}, {"", "", true},
	} {
		if got := SameName(c.a, c.b); got != c.want || got != (sip.HeaderToLower(c.a) == sip.HeaderToLower(c.b)) {
			t.Errorf("SameName(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
