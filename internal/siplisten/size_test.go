package siplisten

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestRequestSizeExact: past the estimate, RequestSize is the request's
// exact size on the wire.
func TestRequestSizeExact(t *testing.T) {
	for _, n := range []int{10, 900, 1400} {
		req := sip.NewRequest(sip.PUBLISH, sip.Uri{Scheme: "sip", User: "alice", Host: "example.com"})
		req.AppendHeader(sip.NewHeader("Event", "dialog"))
		req.AppendHeader(sip.NewHeader("Content-Type", "application/dialog-info+xml"))
		req.SetBody([]byte(strings.Repeat("x", n)))
		got, want := RequestSize(req), len(req.String())
		if n > 700 && got != want {
			t.Errorf("body %d: RequestSize %d, wire size %d", n, got, want)
		}
		if got < want {
			t.Errorf("body %d: RequestSize %d below the wire size %d", n, got, want)
		}
	}
}
