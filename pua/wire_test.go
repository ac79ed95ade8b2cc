package pua

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/resolve"
)

// wirePIDF is a typical PIDF body of about 400 bytes.
var wirePIDF = []byte(`<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" entity="sip:alice@example.com">
  <tuple id="t8d3c2a91"><status><basic>open</basic></status><contact priority="0.8">sip:alice@192.0.2.10:5060</contact></tuple>
  <dm:person id="p1"><dm:note>Available</dm:note></dm:person>
</presence>`)

// wireUri parses s, failing the test when it is not a URI.
func wireUri(t testing.TB, s string) sip.Uri {
	t.Helper()
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return u
}

// wirePublish builds a PUBLISH as sendPublish does.
func wirePublish(t testing.TB, presURI, etag string, hdrs []Header, body []byte) *sip.Request {
	t.Helper()
	uri := wireUri(t, presURI)
	aor := sip.Uri{Scheme: uri.Scheme, User: uri.User, Host: uri.Host, Port: uri.Port}
	req := newRequest(sip.PUBLISH, aor, aor, aor, sip.GenerateTagN(16), "", sip.GenerateTagN(24), 1)
	req.AppendHeader(sip.NewHeader("Event", "presence"))
	exp := sip.ExpiresHeader(3600)
	req.AppendHeader(&exp)
	if etag != "" {
		req.AppendHeader(sip.NewHeader("SIP-If-Match", etag))
	}
	for _, h := range hdrs {
		req.AppendHeader(sip.NewHeader(h.Name, h.Value))
	}
	setBody(req, "application/pidf+xml", body)
	return req
}

// wireSubscribe builds a SUBSCRIBE as sendSubscribe does.
func wireSubscribe(t testing.TB, ruri, pres, watcher, contact, toTag string, routes []string, cseq uint32) *sip.Request {
	t.Helper()
	req := newRequest(sip.SUBSCRIBE, wireUri(t, ruri), wireUri(t, watcher), wireUri(t, pres),
		sip.GenerateTagN(16), toTag, sip.GenerateTagN(24), cseq)
	for _, rt := range routes {
		req.AppendHeader(&sip.RouteHeader{Address: wireUri(t, strings.Trim(rt, "<>"))})
	}
	req.AppendHeader(&sip.ContactHeader{Address: wireUri(t, contact)})
	req.AppendHeader(sip.NewHeader("Event", "dialog"))
	exp := sip.ExpiresHeader(600)
	req.AppendHeader(&exp)
	req.AppendHeader(sip.NewHeader("Accept", "application/dialog-info+xml"))
	req.SetBody(nil)
	return req
}

// wireOptions builds an OPTIONS as sendOptions does.
func wireOptions(t testing.TB, server string) *sip.Request {
	t.Helper()
	ruri := wireUri(t, server)
	from := sip.Uri{Scheme: "sip", User: "puaside", Host: ruri.Host}
	req := newRequest(sip.OPTIONS, ruri, from, ruri, sip.GenerateTagN(16), "", sip.GenerateTagN(24), 1)
	req.SetBody(nil)
	return req
}

// wireApply adds the Via as apply does for a listener advertised as host
// (port 5060 for every transport), then what start adds.
func wireApply(req *sip.Request, host, transport, dst string) *sip.Request {
	st := &sipStack{host: host, ports: map[string]int{"UDP": 5060, "TCP": 5060}}
	st.apply(req, resolve.Target{Transport: transport, Addr: dst})
	if req.Body() == nil {
		req.SetBody(nil)
	}
	return req
}

// checkWire fails the test unless writeRequest accepts req and renders it
// as sipgo does.
func checkWire(t *testing.T, req *sip.Request) {
	t.Helper()
	var b bytes.Buffer
	if !writeRequest(&b, req) {
		t.Fatalf("declined:\n%s", req.String())
	}
	if want := req.String(); b.String() != want {
		t.Fatalf("rendered\n%q\nsipgo\n%q", b.String(), want)
	}
}

func TestWriteRequestMatchesSipgo(t *testing.T) {
	tests := []struct {
		name string
		req  func(t *testing.T) *sip.Request
	}{
		{"publish IPv4 with body", func(t *testing.T) *sip.Request {
			return wireApply(wirePublish(t, "sip:alice@192.0.2.1:5070", "", nil, wirePIDF), "192.0.2.10", "UDP", "192.0.2.1:5070")
		}},
		{"publish host name refresh without body", func(t *testing.T) *sip.Request {
			return wireApply(wirePublish(t, "sip:alice@example.com", "a.1712.5", nil, nil), "pua.example.net", "UDP", "192.0.2.1:5060")
		}},
		{"publish extra headers escaped user", func(t *testing.T) *sip.Request {
			hdrs := []Header{{Name: "Sender", Value: `"Bob Smith" <sip:bob@example.com>;x=1`}, {Name: "X-Empty", Value: ""}}
			return wireApply(wirePublish(t, "sip:al%20ice%3b1@example.com:5080", "", hdrs, wirePIDF), "192.0.2.10", "UDP", "192.0.2.1:5060")
		}},
		{"publish bracketed IPv6 from the parser", func(t *testing.T) *sip.Request {
			return wireApply(wirePublish(t, "sip:alice@[2001:db8::1]:5060", "", nil, wirePIDF), "2001:db8::10", "UDP", "[2001:db8::1]:5060")
		}},
		{"publish over TCP", func(t *testing.T) *sip.Request {
			return wireApply(wirePublish(t, "sip:alice@example.com", "", nil, wirePIDF), "192.0.2.10", "TCP", "192.0.2.1:5060")
		}},
		{"subscribe with routes and contact", func(t *testing.T) *sip.Request {
			return wireApply(wireSubscribe(t, "sip:bob@192.0.2.20:5062;transport=udp", "sip:bob@example.com", "sip:alice@example.com",
				"sip:puaside@192.0.2.10:5060;transport=udp", "to7a1b", []string{"<sip:proxy1.example.com;lr>", "<sip:192.0.2.30:5060;lr;ftag=ab12>"},
				4294967295), "192.0.2.10", "UDP", "192.0.2.30:5060")
		}},
		{"options", func(t *testing.T) *sip.Request {
			return wireApply(wireOptions(t, "sip:presence.example.com:5060"), "192.0.2.10", "UDP", "192.0.2.1:5060")
		}},
		{"display names and quoted params", func(t *testing.T) *sip.Request {
			req := wireApply(wirePublish(t, "sip:alice@example.com", "", nil, wirePIDF), "192.0.2.10", "UDP", "192.0.2.1:5060")
			req.From().DisplayName = "Alice Ä"
			req.From().Params.Add("x", "a b")
			req.From().Params.Add("tab", "a\tb")
			req.From().Params.Add("flag", "")
			req.To().DisplayName = `Q "quoted"`
			req.Via().Params.Add("rport", "")
			req.Via().Params.Add("comment", "two words")
			return req
		}},
		{"URI forms", func(t *testing.T) *sip.Request {
			ruri := sip.Uri{Scheme: "sips", User: "alice", Password: "secret", Host: "2001:db8::1", Port: 5061,
				UriParams: sip.HeaderParams{{K: "transport", V: "tls"}, {K: "lr"}, {K: "q", V: "a b"}},
				Headers:   sip.HeaderParams{{K: "subject", V: "hi there"}, {K: "h", V: "1"}}}
			from := sip.Uri{User: "puaside", Host: "::ffff:192.0.2.1", HierarhicalSlashes: true}
			to := sip.Uri{Scheme: "sip", Host: "fe80::1"}
			req := newRequest(sip.OPTIONS, ruri, from, to, "f1", "t1", "cid@host", 7)
			req.AppendHeader(&sip.ContactHeader{DisplayName: "Me", Address: sip.Uri{Host: "192.0.2.10"},
				Params: sip.HeaderParams{{K: "expires", V: "60"}}})
			req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Host: "*", Wildcard: true}, Params: sip.HeaderParams{{K: "x", V: "y"}}})
			req.AppendHeader(&sip.RouteHeader{Address: sip.Uri{Host: "[::1]", Port: 5060}})
			return wireApply(req, "", "UDP", "192.0.2.1:5060")
		}},
		{"no headers", func(t *testing.T) *sip.Request {
			return sip.NewRequest(sip.OPTIONS, sip.Uri{Host: "example.com"})
		}},
		{"parsed from text", func(t *testing.T) *sip.Request {
			m, err := sip.ParseMessage([]byte("PUBLISH sip:alice@example.com SIP/2.0\r\n" +
				"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n" +
				"From: \"Alice\" <sip:alice@example.com>;tag=1928301774\r\n" +
				"To: <sip:alice@example.com>\r\n" +
				"Call-ID: a84b4c76e66710\r\n" +
				"CSeq: 314159 PUBLISH\r\n" +
				"Max-Forwards: 70\r\n" +
				"Contact: <sip:alice@192.0.2.10>;expires=60\r\n" +
				"Route: <sip:proxy.example.com;lr>\r\n" +
				"Event: presence\r\n" +
				"Expires: 3600\r\n" +
				"Content-Type: application/pidf+xml\r\n" +
				"Content-Length: 4\r\n\r\nbody"))
			if err != nil {
				t.Fatal(err)
			}
			return m.(*sip.Request)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkWire(t, tt.req(t)) })
	}
}

// wireEmbedded is a header type of its own, which writeRequest does not
// know.
type wireEmbedded struct{ sip.Header }

func TestWriteRequestDeclines(t *testing.T) {
	base := func(t *testing.T) *sip.Request {
		return wireApply(wirePublish(t, "sip:alice@example.com", "", nil, wirePIDF), "192.0.2.10", "UDP", "192.0.2.1:5060")
	}
	tests := []struct {
		name string
		req  func(t *testing.T) *sip.Request
	}{
		{"Record-Route", func(t *testing.T) *sip.Request {
			req := base(t)
			req.AppendHeader(&sip.RecordRouteHeader{Address: wireUri(t, "sip:proxy.example.com;lr")})
			return req
		}},
		{"Refer-To parsed from text", func(t *testing.T) *sip.Request {
			m, err := sip.ParseMessage([]byte("PUBLISH sip:alice@example.com SIP/2.0\r\n" +
				"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds\r\n" +
				"Refer-To: <sip:bob@example.com>\r\n" +
				"Content-Length: 0\r\n\r\n"))
			if err != nil {
				t.Fatal(err)
			}
			return m.(*sip.Request)
		}},
		{"own header type", func(t *testing.T) *sip.Request {
			req := base(t)
			req.AppendHeader(wireEmbedded{sip.NewHeader("X-Own", "1")})
			return req
		}},
		{"nil header", func(t *testing.T) *sip.Request {
			req := base(t)
			req.AppendHeader((*sip.ContactHeader)(nil))
			return req
		}},
		{"compact headers", func(t *testing.T) *sip.Request {
			req := base(t)
			req.CompactHeaders = true
			return req
		}},
		{"tel Request-URI", func(t *testing.T) *sip.Request {
			req := base(t)
			req.Recipient = wireUri(t, "tel:+15551234567")
			return req
		}},
		{"tel To", func(t *testing.T) *sip.Request {
			req := base(t)
			req.To().Address = wireUri(t, "tel:+15551234567;phone-context=example.com")
			return req
		}},
		{"urn Route", func(t *testing.T) *sip.Request {
			req := base(t)
			req.AppendHeader(&sip.RouteHeader{Address: wireUri(t, "urn:service:sos")})
			return req
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if writeRequest(&b, tt.req(t)) {
				t.Fatalf("accepted:\n%s", b.String())
			}
		})
	}
}

func TestWriteRequestAllocs(t *testing.T) {
	for _, req := range []*sip.Request{
		wireApply(wirePublish(t, "sip:alice@example.com", "a.1.2", []Header{{Name: "Sender", Value: "sip:bob@example.com"}}, wirePIDF), "192.0.2.10", "UDP", "192.0.2.1:5060"),
		wireApply(wirePublish(t, "sip:alice@[2001:db8::1]", "", nil, wirePIDF), "2001:db8::10", "UDP", "[2001:db8::1]:5060"),
		wireApply(wireSubscribe(t, "sip:bob@example.com", "sip:bob@example.com", "sip:alice@example.com",
			"sip:puaside@192.0.2.10:5060", "", []string{"<sip:proxy.example.com;lr>"}, 2), "192.0.2.10", "UDP", "192.0.2.1:5060"),
	} {
		var b bytes.Buffer
		b.Grow(2048)
		if n := testing.AllocsPerRun(100, func() {
			b.Reset()
			writeRequest(&b, req)
		}); n != 0 {
			t.Errorf("%s: %v allocations", req.Method, n)
		}
	}
}

func FuzzWriteRequest(f *testing.F) {
	f.Add("sip:alice@example.com", "alice", "192.0.2.1", "Alice", "x", "a b", `"Bob" <sip:bob@example.com>`, "<presence/>")
	f.Fuzz(func(t *testing.T, ruri, user, host, display, key, val, hval, body string) {
		to := sip.Uri{User: user, Host: host, UriParams: sip.HeaderParams{{K: key, V: val}}}
		req := newRequest(sip.SUBSCRIBE, sip.Uri{Scheme: "sip", User: user, Host: host}, to, to, val, key, hval, uint32(len(body)))
		req.From().DisplayName = display
		req.From().Params.Add(key, val)
		req.AppendHeader(&sip.ContactHeader{DisplayName: display, Address: sip.Uri{Scheme: "sips", Host: host, Headers: sip.HeaderParams{{K: key, V: val}}}})
		req.AppendHeader(&sip.RouteHeader{Address: sip.Uri{Host: host, Port: len(val)}})
		req.AppendHeader(sip.NewHeader(key, hval))
		exp := sip.ExpiresHeader(len(hval))
		req.AppendHeader(&exp)
		setBody(req, hval, []byte(body))
		via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: host, Port: len(user), Params: sip.NewParams()}
		via.Params.Add("branch", key)
		via.Params.Add(val, hval)
		req.PrependHeader(via)
		var b bytes.Buffer
		if !writeRequest(&b, req) {
			t.Fatalf("declined:\n%q", req.String())
		}
		if want := req.String(); b.String() != want {
			t.Fatalf("rendered\n%q\nsipgo\n%q", b.String(), want)
		}

		// A parsed Request-URI, which may be of any scheme.
		var u sip.Uri
		if sip.ParseUri(ruri, &u) != nil {
			return
		}
		req.Recipient = u
		b.Reset()
		if writeRequest(&b, req) {
			if want := req.String(); b.String() != want {
				t.Fatalf("rendered\n%q\nsipgo\n%q", b.String(), want)
			}
		} else if u.Raw() == "" && (u.Scheme == "sip" || u.Scheme == "sips") {
			t.Fatalf("declined the Request-URI %q", ruri)
		}
	})
}

// BenchmarkWriteRequest renders a typical PUBLISH (host names, a ~400-byte
// PIDF body) as the engine's transactions do, and with sipgo's
// StringWrite.
func BenchmarkWriteRequest(b *testing.B) {
	req := wireApply(wirePublish(b, "sip:alice@example.com", "a.1712345678.42", nil, wirePIDF), "pua.example.net", "UDP", "192.0.2.1:5060")
	var buf bytes.Buffer
	buf.Grow(2048)
	b.Run("writeRequest", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf.Reset()
			if !writeRequest(&buf, req) {
				b.Fatal("declined")
			}
		}
		b.SetBytes(int64(buf.Len()))
	})
	b.Run("sipgo", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf.Reset()
			req.StringWrite(&buf)
		}
		b.SetBytes(int64(buf.Len()))
	})
}
