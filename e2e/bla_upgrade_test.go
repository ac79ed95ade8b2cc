package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/puaside/puaside/bla"
	"github.com/puaside/puaside/pua"
)

// TestBLAUpgradeSweepsPerPhonePublications: a phone's own dialog;sla
// publication, as versions before the composed line document made them,
// is removed at the presence server by the sweep at the next start, while
// its phone stays registered and the line's composed publication is kept.
func TestBLAUpgradeSweepsPerPhonePublications(t *testing.T) {
	presence := presenceServer(t)
	cfg := baseConfig(t, presence)
	cfg.Features.Dialoginfo = false
	cfg.BLA.Lines = []bla.LineConfig{{AoR: blaLine}}
	cfg.BLA.ServerAddress = ""
	reg := registrar(t, "WITH_REPLICATE", cfg)
	ps := startPuaside(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	a := newPolycom(t, "line100", "example.com")
	if res, err := a.register(ctx, reg.Addr(), 300); err != nil || res.StatusCode != 200 {
		t.Fatalf("register: %v %v", res, err)
	}
	if err := a.waitUntil(ctx, "an initial NOTIFY answered", func() bool { return len(a.codes) >= 1 }); err != nil {
		t.Fatal(err)
	}
	if code, err := a.notify(ctx, "active;expires=300", blaDoc(blaLine, 1, "partial", blaDialog{"a-call", "confirmed", "1"})); err != nil || code != 200 {
		t.Fatalf("NOTIFY: %d %v", code, err)
	}
	line := pua.Key{PresURI: blaLine, Event: polSLA, ID: bla.LinePublicationID}
	eventually(t, "the line's publication", func() bool { p, ok := lookup(ps, line); return ok && p.LastStatus == 200 })
	// The phone's own publication of an earlier version.
	legacy := pua.Key{PresURI: blaLine, Event: polSLA, ID: bla.ContactID(a.contactString())}
	res, err := ps.d.Engine().PublishWait(ctx, pua.PublishRequest{Key: legacy, Flag: pua.FlagBLAPublish,
		Body: []byte(blaDoc(blaLine, 1, "full", blaDialog{"old-call", "confirmed", "2"})), ContentType: "application/dialog-info+xml",
		Expires: 300 * time.Second, ExtraHeaders: []pua.Header{{Name: "Sender", Value: a.contactString()}}})
	if err != nil || res.Status != 200 {
		t.Fatalf("legacy publish: %+v %v", res, err)
	}
	rows := func() int {
		n, err := presence.Count(ctx, "presentity", "username = ? AND domain = ? AND event = ?", "line100", "example.com", polSLA)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	eventually(t, "two presentity rows", func() bool { return rows() == 2 })
	ps.stop()

	ps2 := startPuaside(t, cfg)
	eventually(t, "the phone's own publication swept", func() bool { _, ok := lookup(ps2, legacy); return !ok })
	eventually(t, "one presentity row left, the line's", func() bool { return rows() == 1 })
	if p, ok := lookup(ps2, line); !ok || p.State != pua.StateActive {
		t.Errorf("the line's publication after the restart: %+v (present %v)", p, ok)
	}
}
