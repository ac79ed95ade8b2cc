package siplisten

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestRequestSizeExact: past the bound, RequestSize is the request's
// exact size on the wire; within it, never below that size.
func TestRequestSizeExact(t *testing.T) {
	for _, n := range []int{10, 900, 1400} {
		req := sip.NewRequest(sip.PUBLISH, sip.Uri{Scheme: "sip", User: "alice", Host: "example.com"})
		req.AppendHeader(sip.NewHeader("Event", "dialog"))
		req.AppendHeader(sip.NewHeader("Content-Type", "application/dialog-info+xml"))
		req.SetBody([]byte(strings.Repeat("x", n)))
		got, want := RequestSize(req), len(req.String())
		if got+viaRoom > MaxUDPRequest && got != want {
			t.Errorf("body %d: RequestSize %d, wire size %d", n, got, want)
		}
		if got < want {
			t.Errorf("body %d: RequestSize %d below the wire size %d", n, got, want)
		}
		if TooLargeForUDP(req) != (want+viaRoom > MaxUDPRequest) {
			t.Errorf("body %d: TooLargeForUDP %v for %d bytes", n, TooLargeForUDP(req), want)
		}
	}
}

// sizedRequest builds a request whose address headers, parameters and
// body come from the arguments (the engine's PUBLISH and SUBSCRIBE shape).
func sizedRequest(user, host, display, param, value string, port, body int) *sip.Request {
	u := sip.Uri{Scheme: "sip", User: user, Host: host, Port: port, UriParams: sip.NewParams(), Headers: sip.NewParams()}
	u.UriParams.Add(param, value)
	req := sip.NewRequest(sip.SUBSCRIBE, u)
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: host, Port: port, Params: sip.NewParams()}
	via.Params.Add("branch", "z9hG4bK"+value)
	via.Params.Add(param, value)
	req.AppendHeader(via)
	from := &sip.FromHeader{DisplayName: display, Address: u, Params: sip.NewParams()}
	from.Params.Add("tag", value)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{DisplayName: display, Address: u, Params: sip.NewParams()})
	req.AppendHeader(&sip.ContactHeader{DisplayName: display, Address: u, Params: sip.NewParams()})
	req.AppendHeader(&sip.RouteHeader{Address: u})
	req.AppendHeader(&sip.RecordRouteHeader{Address: u})
	req.AppendHeader(sip.NewHeader("Event", param))
	cid := sip.CallIDHeader(value)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1<<32 - 1, MethodName: sip.RequestMethod(param)})
	mf, exp, cl := sip.MaxForwardsHeader(1<<32-1), sip.ExpiresHeader(1<<32-1), sip.ContentLengthHeader(1<<32-1)
	ct := sip.ContentTypeHeader(value)
	req.AppendHeader(&mf)
	req.AppendHeader(&exp)
	req.AppendHeader(&ct)
	req.AppendHeader(&cl)
	req.SetBody([]byte(strings.Repeat("b", body)))
	return req
}

// checkSize fails when RequestSize is below the wire size or
// TooLargeForUDP decides otherwise than the wire size says.
func checkSize(t *testing.T, req *sip.Request) {
	t.Helper()
	got, want := RequestSize(req), len(req.String())
	if got < want {
		t.Fatalf("RequestSize %d below the wire size %d:\n%s", got, want, req.String())
	}
	if TooLargeForUDP(req) != (want+viaRoom > MaxUDPRequest) {
		t.Fatalf("TooLargeForUDP %v for %d bytes", TooLargeForUDP(req), want)
	}
}

// TestRequestSizeBound: quoted display names, parameters that need
// quoting, IPv6 hosts and ports all stay within the bound.
func TestRequestSizeBound(t *testing.T) {
	for _, c := range []struct {
		user, host, display, param, value string
		port                              int
	}{
		{"alice", "example.com", "", "transport", "udp", 0},
		{"bob", "::1", `Bob "the" Builder`, "x", "a b;c", 5060},
		{"", "2001:db8::1", "Карл", "lr", "", 65535},
		{"c%40d", "[2001:db8::2]", `"`, "q", `"quoted"`, 1},
	} {
		for _, body := range []int{0, 300, 700, 900, 1100, 1400} {
			checkSize(t, sizedRequest(c.user, c.host, c.display, c.param, c.value, c.port, body))
		}
	}
}

// FuzzRequestSize: for any header values, RequestSize is at least the
// wire size and TooLargeForUDP agrees with the wire size.
func FuzzRequestSize(f *testing.F) {
	f.Add("alice", "example.com", "Alice", "transport", "udp", 5060, 400)
	f.Add("", "::1", `a "b"`, "x", "a b", 0, 1000)
	f.Fuzz(func(t *testing.T, user, host, display, param, value string, port, body int) {
		if body < 0 || body > 4000 || port < 0 || port > 65535 || param == "" {
			return
		}
		checkSize(t, sizedRequest(user, host, display, param, value, port, body))
	})
}
