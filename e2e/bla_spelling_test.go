package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/puaside/puaside/bla"
)

// TestBLALineSpellingsKamailio: shared lines configured with a port, as
// sips:, with an uppercase host and a transport parameter are the AoRs the
// registrar's copies carry: each phone registering its line gets the
// line's subscription.
func TestBLALineSpellingsKamailio(t *testing.T) {
	presence := presenceServer(t)
	cfg := baseConfig(t, presence)
	cfg.Features.Dialoginfo = false
	cfg.BLA.Lines = []bla.LineConfig{
		{AoR: "sip:line100@example.com:5060"},
		{AoR: "sips:line200@EXAMPLE.COM;transport=tcp"},
	}
	cfg.BLA.ServerAddress = ""
	reg := registrar(t, "WITH_REPLICATE", cfg)
	startPuaside(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, user := range []string{"line100", "line200"} {
		p := newPolycom(t, user, "example.com")
		res, err := p.register(ctx, reg.Addr(), 300)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("%s: register: %v %v", user, res, err)
		}
		if err := p.waitUntil(ctx, "a SUBSCRIBE for "+user, func() bool { return len(p.subs) >= 1 }); err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		if s := p.subscribes()[0]; s.To != "sip:"+user+"@example.com" {
			t.Errorf("%s: SUBSCRIBE To %s, want sip:%s@example.com", user, s.To, user)
		}
	}
}
