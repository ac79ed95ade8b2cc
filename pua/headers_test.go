package pua

import (
	"errors"
	"strings"
	"testing"
)

// TestReservedExtraHeadersRefused: an extra header may not carry a header
// the engine sets itself, in any case, full or compact form; nothing is sent
// for a refused request.
func TestReservedExtraHeadersRefused(t *testing.T) {
	fs := newFakeServer(t)
	e := newTestEngine(t, fs, newFakeClock(), nil, nil)
	reserved := []string{"Via", "v", "Call-ID", "i", "CALL-ID", "CSeq", "cseq", "Content-Length", "l",
		"Content-Type", "c", "Content-Encoding", "e", "From", "f", "To", "t", "Contact", "m", "Max-Forwards",
		"Route", "Record-Route", "Expires", "Min-Expires", "Event", "o", "Allow-Events", "u", "Supported", "k",
		"SIP-If-Match", "sip-if-match", "SIP-ETag", "Subscription-State", "Authorization", "Proxy-Authorization"}
	for _, name := range reserved {
		r := pubReq("x")
		r.ExtraHeaders = []Header{{Name: "X-Ok", Value: "1"}, {Name: name, Value: "injected"}}
		err := e.Publish(r)
		if !errors.Is(err, ErrReservedHeader) {
			t.Errorf("publish with extra header %q: %v, want ErrReservedHeader", name, err)
		}
		s := slaReq()
		s.ExtraHeaders = []Header{{Name: name, Value: "injected"}}
		if err := e.Subscribe(s); !errors.Is(err, ErrReservedHeader) {
			t.Errorf("subscribe with extra header %q: %v, want ErrReservedHeader", name, err)
		}
		if _, ok := ReservedHeader(strings.ToUpper(name)); !ok {
			t.Errorf("ReservedHeader(%q) is false", strings.ToUpper(name))
		}
	}
	for _, name := range []string{"Sender", "X-Custom", "Priority", "P-Asserted-Identity", "Subject", "Vias"} {
		if canon, ok := ReservedHeader(name); ok {
			t.Errorf("ReservedHeader(%q) = %q, want not reserved", name, canon)
		}
	}
	if n := len(fs.Requests()); n != 0 {
		t.Fatalf("%d requests sent for refused ones", n)
	}
	r := pubReq("ok")
	r.ExtraHeaders = []Header{{Name: "Sender", Value: "sip:phone@10.0.0.1"}}
	mustWait(t, e, r)
}
