package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/puaside/puaside/bla"
)

// TestPABLALineTwoPhones: a shared line of two phones with puaside as the
// presence server. A watcher of the line that is not one of its phones
// sees both calls in one NOTIFY; each phone sees the other phone's call and
// never its own (pa leaves out the dialogs bla qualified with the
// watcher's contact). Kamailio's presence server instead tells every
// watcher the newest publication, and the publishing phone nothing useful
// (an empty body when it names the Sender: TestBLAComposedLineSender).
func TestPABLALineTwoPhones(t *testing.T) {
	cfg := baseConfig(t, nil)
	cfg.Features.Dialoginfo = false
	cfg.BLA.Lines = []bla.LineConfig{{AoR: blaLine}}
	cfg.BLA.ServerAddress = ""
	reg := registrar(t, "WITH_REPLICATE", cfg)
	startPuaside(t, cfg)
	server := hostPort(cfg.PA.Listen[0])
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := &lineRig{t: t, ctx: ctx, reg: reg.Addr(), version: map[*polycom]int{}}
	r.watcher = newPolycom(t, "line100", "example.com")
	if err := r.watcher.watchLine(ctx, server, 600); err != nil {
		t.Fatalf("watcher: %v", err)
	}
	for i := 0; i < 2; i++ {
		p := newPolycom(t, "line100", "example.com")
		if err := p.watchLine(ctx, server, 600); err != nil {
			t.Fatalf("phone %d: %v", i, err)
		}
		if res, err := p.register(ctx, reg.Addr(), 300); err != nil || res.StatusCode != 200 {
			t.Fatalf("phone %d: register: %v %v", i, res, err)
		}
		r.phones = append(r.phones, p)
	}
	for i, p := range r.phones {
		if err := p.waitUntil(ctx, "puaside's SUBSCRIBE answered", func() bool { return len(p.codes) >= 1 }); err != nil {
			t.Fatalf("phone %d: %v", i, err)
		}
	}
	// The steps wait for the phones as well as the watcher: pa keeps one
	// NOTIFY in flight per dialog and coalesces the changes meanwhile, so a
	// phone slow to answer would otherwise be told only the newest state.
	a, b := r.phones[0], r.phones[1]
	r.step(0, "a-call", "confirmed", "A's call", "a-call")
	r.waitLine(b, "phone B told of A's call", "a-call")
	r.step(1, "b-call", "confirmed", "both calls in one NOTIFY", "a-call", "b-call")
	r.waitLine(a, "phone A told of B's call", "b-call")
	r.step(1, "b-call", "terminated", "A's call only", "a-call")
	r.waitLine(a, "phone A told B hung up")
	r.step(0, "a-call", "terminated", "the line idle")
	r.waitLine(b, "phone B told A hung up")
	r.checkViews(r.watcher, "the watcher", []string{"a-call"}, []string{"a-call", "b-call"}, []string{"a-call"}, []string{})
	// Each phone is told the other's call only.
	r.checkViews(r.phones[0], "phone A", []string{"b-call"}, []string{})
	r.checkViews(r.phones[1], "phone B", []string{"a-call"}, []string{})
}
