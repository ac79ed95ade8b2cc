package pua

import (
	"testing"
	"time"
)

// TestSweepLeavesBoundedLifetime: an unclaimed publication the server holds
// whose lifetime is bounded (one adopted from Kamailio's pua_usrloc, body
// unknown) is not removed by the sweep; its owner's publish later modifies
// it under its ETag instead of creating a second publication.
func TestSweepLeavesBoundedLifetime(t *testing.T) {
	fs := newFakeServer(t)
	clk := newFakeClock()
	st := newMemStore()
	const (
		adopted = "sip:adopted@example.com"
		gone    = "sip:gone@example.com"
	)
	a := storedPub(clk, adopted, "presence", "usrloc", "e-adopted", FlagUsrloc, nil)
	a.DesiredExpires = clk.Now().Add(30 * time.Minute).Unix()
	st.put(a, storedPub(clk, gone, "presence", "usrloc", "e-gone", FlagUsrloc, pidf("gone")))
	e := newTestEngineOwners(t, fs, clk, st, nil, []int{FlagUsrloc})
	e.ClaimsDone(FlagUsrloc)
	waitFor(t, "unclaimed publication removed", func() bool {
		_, ok := e.Publication(Key{PresURI: gone, Event: "presence", ID: "usrloc"})
		return !ok
	})
	key := Key{PresURI: adopted, Event: "presence", ID: "usrloc"}
	if _, ok := e.Publication(key); !ok {
		t.Fatal("the sweep removed a publication whose lifetime is bounded")
	}
	for _, r := range requestsTo(fs, adopted) {
		if headerValue(r, "Expires") == "0" {
			t.Fatal("PUBLISH Expires: 0 sent for a publication whose lifetime is bounded")
		}
	}
	if err := e.Publish(PublishRequest{Key: key, Body: pidf("open"), Flag: FlagUsrloc}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the owner's publish sent", func() bool {
		for _, r := range requestsTo(fs, adopted) {
			if len(r.Body()) > 0 {
				return true
			}
		}
		return false
	})
	// Every request continues the adopted publication: none is initial.
	for _, r := range requestsTo(fs, adopted) {
		if headerValue(r, "SIP-If-Match") == "" {
			t.Fatalf("initial PUBLISH sent for the adopted publication (a second copy): %v", r)
		}
	}
}
