package pua

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/clock/clocktest"
	"github.com/puaside/puaside/internal/puatest"
)

// kamailio200 is testdata/publish2xx/initial.sip as text with LF line ends
// (its comment line dropped), the base of the hand-made variants.
func kamailio200(tb testing.TB) string {
	tb.Helper()
	return strings.ReplaceAll(string(puatest.WireSIP(puatest.Testdata(tb, "publish2xx/initial.sip"))), "\r\n", "\n")
}

// wireLF turns a message written with LF line ends into wire bytes.
func wireLF(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

// edit returns s with each old replaced by new, failing when old is absent.
func edit(tb testing.TB, s string, oldNew ...string) string {
	tb.Helper()
	for i := 0; i < len(oldNew); i += 2 {
		if !strings.Contains(s, oldNew[i]) {
			tb.Fatalf("variant: %q not in the base message", oldNew[i])
		}
		s = strings.Replace(s, oldNew[i], oldNew[i+1], 1)
	}
	return s
}

// leanAgreement compares the lean parse of d, which accepted it, with
// sipgo's: sipgo's parser accepts d too, and both give the same status
// line, Vias, CSeq, Call-ID, SIP-ETag, Expires and engine Result. It
// returns a description of the first difference, or "".
func leanAgreement(lean *sip.Response, d []byte) string {
	msg, err := sip.NewParser().ParseSIP(d)
	if err != nil {
		return "sipgo's parser refuses it: " + err.Error()
	}
	full, ok := msg.(*sip.Response)
	switch {
	case !ok:
		return "sipgo's parser reads a request"
	case lean.StatusCode != full.StatusCode || lean.Reason != full.Reason:
		return "status line " + lean.StartLine() + " / " + full.StartLine()
	case lean.Body() != nil || len(full.Body()) != 0:
		return "a body"
	case !reflect.DeepEqual(lean.Via(), full.Via()):
		return "top Via " + lean.Via().Value() + " / " + full.Via().Value()
	case !reflect.DeepEqual(lean.CSeq(), full.CSeq()):
		return "CSeq"
	case lean.CSeq().MethodName != sip.PUBLISH:
		return "CSeq method " + string(lean.CSeq().MethodName)
	}
	lb, _ := lean.Via().Params.Get("branch")
	fb, _ := full.Via().Params.Get("branch")
	if lb == "" || lb != fb {
		return "branch " + lb + " / " + fb
	}
	lv, fv := lean.GetHeaders("Via"), full.GetHeaders("Via")
	if len(lv) != len(fv) {
		return "number of Vias"
	}
	for i := range lv {
		if !reflect.DeepEqual(lv[i], fv[i]) {
			return "Via " + lv[i].Value() + " / " + fv[i].Value()
		}
	}
	if lc, fc := callID(lean), callID(full); lc != fc {
		return "Call-ID " + lc + " / " + fc
	}
	for _, name := range []string{"SIP-ETag", "Expires"} {
		lh, fh := lean.GetHeader(name), full.GetHeader(name)
		if (lh == nil) != (fh == nil) || lh != nil && lh.Value() != fh.Value() {
			return name
		}
	}
	if lr, fr := (txOutcome{res: lean}).result(), (txOutcome{res: full}).result(); lr != fr {
		return "engine result"
	}
	return ""
}

// TestLeanPublishResponseAgrees: real 2xx answers to PUBLISH, and
// variants of them, are read by the lean parser as sipgo's parser reads
// them.
func TestLeanPublishResponseAgrees(t *testing.T) {
	base := kamailio200(t)
	cases := map[string][]byte{}
	for _, name := range []string{"initial", "refresh", "remove", "rport"} {
		cases["kamailio "+name] = puatest.WireSIP(puatest.Testdata(t, "publish2xx/"+name+".sip"))
	}
	variants := map[string]string{
		"lower-case names": edit(t, base, "Via:", "via:", "From:", "from:", "To:", "to:", "Call-ID:", "call-id:",
			"CSeq:", "cseq:", "Expires:", "expires:", "SIP-ETag:", "sip-etag:", "Content-Length:", "content-length:"),
		"upper-case names": edit(t, base, "Via:", "VIA:", "CSeq:", "CSEQ:", "Expires:", "EXPIRES:", "SIP-ETag:", "SIP-ETAG:",
			"Content-Length:", "CONTENT-LENGTH:"),
		"compact forms": edit(t, base, "Via:", "v:", "From:", "f:", "To:", "t:", "Call-ID:", "i:", "Content-Length:", "l:"),
		"extra headers": edit(t, base, "Server: puaside-presence\n",
			"Server: kamailio (5.6.3 (x86_64/linux))\nAllow-Events: presence\nDate: Wed, 02 Dec 2026 01:00:00 GMT\nX-Note: \"a\" <b>, c; d\nk: 100rel\n"),
		"spaces around colons": edit(t, base, "Via: ", "Via :  ", "CSeq: 1 PUBLISH", "CSeq\t:\t1 PUBLISH  ",
			"SIP-ETag: ", "SIP-ETag  :", "Expires: 600", "Expires:600 \t", "Content-Length: 0", "Content-Length :0"),
		"no SIP-ETag":                   edit(t, base, "SIP-ETag: a.1796173283.25532.1.0\n", ""),
		"no Expires":                    edit(t, base, "Expires: 600\n", ""),
		"no SIP-ETag, Expires":          edit(t, base, "SIP-ETag: a.1796173283.25532.1.0\n", "", "Expires: 600\n", ""),
		"no Call-ID, From, To":          edit(t, base, "Call-ID: GBbeCKxryK9UzVsPgB4hUOFG\n", "", "From: <sip:alice@example.com>;tag=4Aozua1eA2f5IKQn\n", "", "To: <sip:alice@example.com>;tag=66dbf2065d797447003c483187138c91-d6b0930e\n", ""),
		"two Via lines":                 edit(t, base, "From:", "Via: SIP/2.0/UDP 192.0.2.7:5080;branch=z9hG4bKlower;received=192.0.2.8;rport=5081\nFrom:"),
		"three Via lines":               edit(t, base, "From:", "v: SIP/2.0/TCP proxy.example.com;branch=z9hG4bK2\nVIA: SIP/2.0/UDP [2001:db8::9];branch=z9hG4bK3\nFrom:"),
		"headers reordered":             edit(t, base, "CSeq: 1 PUBLISH\n", "", "Content-Length: 0\n", "", "SIP/2.0 200 OK\n", "SIP/2.0 200 OK\nContent-Length: 0\nCSeq: 1 PUBLISH\n"),
		"202 Accepted":                  edit(t, base, "200 OK", "202 Accepted"),
		"reason of words":               edit(t, base, "200 OK", "200 Publication accepted, thank you"),
		"UTF-8 reason":                  edit(t, base, "200 OK", "200 D'accord, reçu"),
		"empty reason":                  edit(t, base, "200 OK", "200 "),
		"IPv6 Via":                      edit(t, base, "UDP 127.0.0.1:37445;branch=z9hG4bK.oDNTDk7iylARYgCG", "UDP [2001:db8::1]:5060;branch=z9hG4bK.x;received=2001:db8::2;rport=5061"),
		"IPv6 Via without port":         edit(t, base, "UDP 127.0.0.1:37445;", "UDP [::1];"),
		"Via without port":              edit(t, base, "127.0.0.1:37445;", "puaside.example.com;"),
		"Via params":                    edit(t, base, ";branch=z9hG4bK.oDNTDk7iylARYgCG", ";rport;branch=z9hG4bK.oDNTDk7iylARYgCG;Branch=other;alias;ttl=;maddr=192.0.2.1"),
		"Via with a tab":                edit(t, base, "UDP 127.0.0.1", "UDP\t127.0.0.1"),
		"CSeq with a tab":               edit(t, base, "CSeq: 1 PUBLISH", "CSeq: 2147483647\tPUBLISH"),
		"CSeq with leading zeros":       edit(t, base, "CSeq: 1 PUBLISH", "CSeq: 007 PUBLISH"),
		"Content-Length of zeros":       edit(t, base, "Content-Length: 0", "Content-Length: 000"),
		"display names":                 edit(t, base, "From: <sip:", "From: \"Alice; Liddell\" <sip:", "To: <sip:", "To: Zoë Bé <sips:"),
		"URI forms":                     edit(t, base, "<sip:alice@example.com>;tag=4A", "<SIP://alice:pw@EXAMPLE.com:05060;user=phone?x=1>;tag=4A", "To: <sip:alice@example.com>", "To: <sip:example.com;lr>"),
		"To without a tag":              edit(t, base, ";tag=66dbf2065d797447003c483187138c91-d6b0930e", ""),
		"empty SIP-ETag":                edit(t, base, "SIP-ETag: a.1796173283.25532.1.0", "SIP-ETag:"),
		"Expires not a number":          edit(t, base, "Expires: 600", "Expires: soon"),
		"a bare LF in an unread header": edit(t, base, "Server: puaside-presence", "Server: puaside\npresence"),
	}
	for name, v := range variants {
		b := wireLF(v)
		if name == "a bare LF in an unread header" {
			b = []byte(strings.Replace(string(b), "puaside\r\npresence", "puaside\npresence", 1))
		}
		cases[name] = b
	}
	for name, d := range cases {
		t.Run(name, func(t *testing.T) {
			res, ok := leanPublishResponse(d)
			if !ok {
				t.Fatalf("declined:\n%s", d)
			}
			if diff := leanAgreement(res, d); diff != "" {
				t.Fatalf("differs from sipgo's parse: %s\n%s", diff, d)
			}
		})
	}
}

// TestLeanPublishResponseDeclines: anything but a plain 2xx to PUBLISH is
// left to sipgo's parser.
func TestLeanPublishResponseDeclines(t *testing.T) {
	base := kamailio200(t)
	cases := map[string][]byte{
		"kamailio 412": puatest.WireSIP(puatest.Testdata(t, "publish2xx/412.sip")),
		"request":      wireLF("PUBLISH sip:alice@example.com SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\nCSeq: 1 PUBLISH\nContent-Length: 0\n\n"),
		"LF line ends": []byte(base),
		"a CR alone":   []byte(strings.Replace(string(wireLF(base)), "Server: puaside-presence", "Server: puaside\rpresence", 1)),
		"too long":     wireLF(edit(t, base, "Server: puaside-presence", "Server: "+strings.Repeat("x", 70000))),
		"no end":       wireLF(strings.TrimSuffix(base, "\n")),
		"CR LF before": append([]byte("\r\n"), wireLF(base)...),
	}
	variants := map[string]string{
		"100 Trying":                 edit(t, base, "200 OK", "100 Trying"),
		"180":                        edit(t, base, "200 OK", "180 Ringing"),
		"404":                        edit(t, base, "200 OK", "404 Not Found"),
		"status of two digits":       edit(t, base, "200 OK", "20 OK"),
		"status of four digits":      edit(t, base, "200 OK", "2000 OK"),
		"no reason":                  edit(t, base, "200 OK", "200"),
		"two spaces":                 edit(t, base, "200 OK", " 200 OK"),
		"reason read as a URI":       edit(t, base, "200 OK", "200 sip:OK"),
		"reason with a control byte": edit(t, base, "200 OK", "200 O\x01K"),
		"SIP/1.0":                    edit(t, base, "SIP/2.0 200", "SIP/1.0 200"),
		"CSeq SUBSCRIBE":             edit(t, base, "1 PUBLISH", "1 SUBSCRIBE"),
		"CSeq publish":               edit(t, base, "1 PUBLISH", "1 publish"),
		"CSeq two spaces":            edit(t, base, "1 PUBLISH", "1  PUBLISH"),
		"CSeq too large":             edit(t, base, "1 PUBLISH", "2147483648 PUBLISH"),
		"CSeq twice":                 edit(t, base, "CSeq: 1 PUBLISH\n", "CSeq: 1 PUBLISH\nCSeq: 2 PUBLISH\n"),
		"no CSeq":                    edit(t, base, "CSeq: 1 PUBLISH\n", ""),
		"no Via":                     edit(t, base, "Via: SIP/2.0/UDP 127.0.0.1:37445;branch=z9hG4bK.oDNTDk7iylARYgCG\n", ""),
		"no Content-Length":          edit(t, base, "Content-Length: 0\n", ""),
		"Content-Length twice":       edit(t, base, "Content-Length: 0\n", "Content-Length: 0\nl: 0\n"),
		"a body":                     edit(t, base, "Content-Length: 0\n\n", "Content-Length: 4\n\nbody"),
		"a body without length":      edit(t, base, "Content-Length: 0\n\n", "\nbody"),
		"bytes after":                edit(t, base, "Content-Length: 0\n\n", "Content-Length: 0\n\n\n"),
		"folded Via":                 edit(t, base, "UDP 127.0.0.1:37445;", "UDP 127.0.0.1:37445\n ;"),
		"folded Server":              edit(t, base, "Server: puaside-presence", "Server: puaside\n\tpresence"),
		"leading space":              edit(t, base, "Via:", " Via:"),
		"two Vias in a line":         edit(t, base, "oDNTDk7iylARYgCG\n", "oDNTDk7iylARYgCG, SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK2\n"),
		"Via without branch":         edit(t, base, ";branch=z9hG4bK.oDNTDk7iylARYgCG", ";rport"),
		"Via with an empty branch":   edit(t, base, ";branch=z9hG4bK.oDNTDk7iylARYgCG", ";branch="),
		"Via with a branch twice":    edit(t, base, ";branch=z9hG4bK.oDNTDk7iylARYgCG", ";branch=z9hG4bK.a;branch=z9hG4bK.b"),
		"Via with a quoted param":    edit(t, base, "oDNTDk7iylARYgCG", "oDNTDk7iylARYgCG;x=\"a b\""),
		"Via with spaces in params":  edit(t, base, ";branch=", " ; branch = "),
		"Via with an empty param":    edit(t, base, ";branch=", ";;branch="),
		"Via with a bad port":        edit(t, base, "127.0.0.1:37445", "127.0.0.1:abc"),
		"Via with a port too large":  edit(t, base, "127.0.0.1:37445", "127.0.0.1:65536"),
		"Via with an empty port":     edit(t, base, "127.0.0.1:37445", "127.0.0.1:"),
		"Via with IPv6 unclosed":     edit(t, base, "127.0.0.1:37445", "[::1:5060"),
		"Via with an IPv6 zone":      edit(t, base, "127.0.0.1:37445", "[fe80::1%eth0]:5060"),
		"Via without host":           edit(t, base, "UDP 127.0.0.1:37445", "UDP "),
		"Via with two spaces":        edit(t, base, "UDP 127.0.0.1", "UDP  127.0.0.1"),
		"Via without transport":      edit(t, base, "SIP/2.0/UDP ", "SIP/2.0 "),
		"Contact":                    edit(t, base, "Server:", "Contact: <sip:ps@127.0.0.1>\nServer:"),
		"Content-Type":               edit(t, base, "Server:", "c: application/pidf+xml\nServer:"),
		"Record-Route":               edit(t, base, "Server:", "Record-Route: <sip:127.0.0.1;lr>\nServer:"),
		"Max-Forwards":               edit(t, base, "Server:", "Max-Forwards: 70\nServer:"),
		"SIP-ETag twice":             edit(t, base, "Server:", "SIP-ETag: other\nServer:"),
		"Expires twice":              edit(t, base, "Server:", "expires: 10\nServer:"),
		"Call-ID twice":              edit(t, base, "Server:", "i: other\nServer:"),
		"Call-ID empty":              edit(t, base, "Call-ID: GBbeCKxryK9UzVsPgB4hUOFG", "Call-ID:"),
		"SIP-ETag not ASCII":         edit(t, base, "SIP-ETag: a.1796173283.25532.1.0", "SIP-ETag: a.1\u00a0"),
		"From without brackets":      edit(t, base, "From: <sip:alice@example.com>", "From: sip:alice@example.com"),
		"From unclosed":              edit(t, base, "From: <sip:alice@example.com>;tag=4Aozua1eA2f5IKQn", "From: <sip:alice@example.com"),
		"From with a bad port":       edit(t, base, "From: <sip:alice@example.com>", "From: <sip:alice@example.com:x>"),
		"From wildcard":              edit(t, base, "From: <sip:alice@example.com>", "From: <sip:*>"),
		"From tel URI":               edit(t, base, "From: <sip:alice@example.com>", "From: <tel:+15550100>"),
		"From with an escape":        edit(t, base, "From: <sip:", "From: \"a\\\"b\" <sip:"),
		"From twice":                 edit(t, base, "Server:", "f: <sip:bob@example.com>\nServer:"),
		"To empty":                   edit(t, base, "To: <sip:alice@example.com>;tag=66dbf2065d797447003c483187138c91-d6b0930e", "To:"),
		"header without colon":       edit(t, base, "Server: puaside-presence", "Server puaside-presence"),
		"header name with a space":   edit(t, base, "Server:", "Ser ver:"),
		"header name not ASCII":      edit(t, base, "Server:", "Sérver:"),
		"empty header name":          edit(t, base, "Server:", ":"),
	}
	for name, v := range variants {
		cases[name] = wireLF(v)
	}
	for name, d := range cases {
		t.Run(name, func(t *testing.T) {
			if res, ok := leanPublishResponse(d); ok {
				t.Fatalf("accepted (%s):\n%q", res.StartLine(), d)
			}
		})
	}
}

// FuzzLeanPublishResponse: whenever the lean parser accepts a datagram,
// sipgo's parser accepts it too and reads the same status, Vias, CSeq,
// SIP-ETag and Expires (leanAgreement). Seeds: testdata/fuzz and the real
// responses of testdata/publish2xx.
func FuzzLeanPublishResponse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "publish2xx", "*.sip"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds: %v", err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(puatest.WireSIP(b))
	}
	f.Fuzz(func(t *testing.T, d []byte) {
		res, ok := leanPublishResponse(d)
		if !ok {
			return
		}
		if diff := leanAgreement(res, d); diff != "" {
			t.Fatalf("differs from sipgo's parse: %s\n%q", diff, d)
		}
	})
}

// TestTapReadsPublish2xxLean: the tap hands a plain 200 to a live PUBLISH
// over as read by the lean parser (no From: it is not read), and a 412 as
// read by sipgo's parser.
func TestTapReadsPublish2xxLean(t *testing.T) {
	l := newNICTLayer(clocktest.New(time.Unix(1_700_000_000, 0)))
	tap := l.tap()
	from := netip.MustParseAddrPort("127.0.0.1:5060")
	for _, tc := range []struct {
		file     string
		status   int
		wantFrom bool
	}{{"initial.sip", 200, false}, {"412.sip", 412, true}} {
		raw := string(puatest.WireSIP(puatest.Testdata(t, "publish2xx/"+tc.file)))
		via := puatest.ParseSIP(t, []byte(raw)).(*sip.Response).Via()
		branch, _ := via.Params.Get("branch")
		req := sip.NewRequest(sip.PUBLISH, sip.Uri{Scheme: "sip", User: "alice", Host: "example.com"})
		params := sip.NewParams()
		params.Add("branch", branch)
		req.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: via.Host,
			Port: via.Port, Params: params})
		req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.PUBLISH})
		req.Laddr = sip.Addr{IP: net.IPv4(127, 0, 0, 1), Port: via.Port}
		w := &captureWriter{}
		type result struct {
			res *sip.Response
			err error
		}
		done := make(chan result, 1)
		go func() {
			res, err := l.do(context.Background(), w, from, req)
			done <- result{res, err}
		}()
		waitFor(t, "request sent", func() bool { return w.first() != nil })
		if !tap([]byte(raw), from) {
			t.Fatalf("%s: the tap left the live transaction's response to sipgo", tc.file)
		}
		select {
		case r := <-done:
			if r.err != nil || r.res.StatusCode != tc.status || r.res.Source() != from.String() || r.res.Transport() != "UDP" {
				t.Fatalf("%s: outcome %v %v", tc.file, r.res, r.err)
			}
			if got := r.res.From() != nil; got != tc.wantFrom {
				t.Fatalf("%s: From read %v, want %v (lean parse expected: %v)", tc.file, got, tc.wantFrom, !tc.wantFrom)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the transaction did not end with the tapped response", tc.file)
		}
	}
}

// BenchmarkLeanPublishResponse reads Kamailio's 200 to a PUBLISH with the
// lean parser and, for comparison, with sipgo's parser as the tap did.
func BenchmarkLeanPublishResponse(b *testing.B) {
	d := puatest.WireSIP(puatest.Testdata(b, "publish2xx/initial.sip"))
	b.Run("lean", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := leanPublishResponse(d); !ok {
				b.Fatal("declined")
			}
		}
	})
	b.Run("sipgo", func(b *testing.B) {
		p := sip.NewParser()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.ParseSIP(d); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestResultKeepsNoPartOfTheDatagram: the ETag and reason of a 2xx, which
// the publication keeps until its next PUBLISH, are copies, not substrings
// of the parsed datagram: a substring would keep the whole response alive
// with every publication (38 MB at 100,000 AoRs).
func TestResultKeepsNoPartOfTheDatagram(t *testing.T) {
	d := wireLF(edit(t, kamailio200(t), "200 OK", "200 Fine"))
	res, ok := leanPublishResponse(d)
	if !ok {
		t.Fatal("lean parser declined a real Kamailio 200")
	}
	h := res.GetHeader("SIP-ETag")
	if h == nil {
		t.Fatal("no SIP-ETag")
	}
	r := (txOutcome{res: res}).result()
	if r.ETag == "" || r.Reason != "Fine" {
		t.Fatalf("result %+v", r)
	}
	within := func(s, in string) bool {
		p, lo := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(unsafe.StringData(in)))
		return p >= lo && p < lo+uintptr(len(in))
	}
	if within(r.ETag, h.Value()) || within(r.Reason, res.Reason) {
		t.Fatalf("the result's ETag %q or reason %q points into the response", r.ETag, r.Reason)
	}
}
