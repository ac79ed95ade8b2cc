package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/puaside/puaside/pua"
)

// TestBLAKamailioAcceptsRefreshAndRemoval pins down how the engine's
// dialog;sla PUBLISHes fare at a real Kamailio presence server (presence_xml
// with disable_bla=0). Kamailio 5.6 parses the body of every PUBLISH that
// updates a dialog;sla presentity (presentity.c, check_if_dialog on the new
// body) and answers 500 when it is not XML, so a refresh or a removal sent
// without a body, as RFC 3903 describes them, is refused. The publication
// must nevertheless be refreshed and removed.
func TestBLAKamailioAcceptsRefreshAndRemoval(t *testing.T) {
	presence := presenceServer(t)
	cfg := baseConfig(t, presence)
	cfg.Features.Dialoginfo = false
	ps := startPuaside(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	key := pua.Key{PresURI: blaLine, Event: polSLA, ID: "repro"}
	body := blaDoc(blaLine, 1, "partial", blaDialog{"r-call-1", "confirmed", "1"})
	const expires = 4 * time.Second
	res, err := ps.d.Engine().PublishWait(ctx, pua.PublishRequest{Key: key, Body: []byte(body),
		ContentType: "application/dialog-info+xml", Expires: expires, Flag: pua.FlagBLAPublish,
		ExtraHeaders: []pua.Header{{Name: "Sender", Value: "sip:line100@127.0.0.1:5999"}}})
	if err != nil || res.Status != 200 {
		t.Fatalf("initial publish: %+v, %v", res, err)
	}
	first := publication(t, ps, key)

	// Past the first refresh: the refresh must have been accepted.
	eventually(t, "a refresh of the dialog;sla publication", func() bool {
		p, ok := lookup(ps, key)
		// Kamailio keeps the ETag of a dialog;sla publication on refresh
		// (etag_not_new), so a refresh shows as a later expiry.
		return ok && (p.Expires.After(first.Expires) || p.LastStatus != 200)
	})
	if p := publication(t, ps, key); p.LastStatus != 200 || p.State != pua.StateActive {
		t.Errorf("refresh of a dialog;sla publication: status %d %q, state %s; want 200, active",
			p.LastStatus, p.LastReason, p.State)
	}

	res, err = ps.d.Engine().RemoveWait(ctx, key)
	if err != nil || res.Status != 200 {
		t.Errorf("removal of a dialog;sla publication: %+v, %v; want 200", res, err)
	}
	eventually(t, "the presentity row removed", func() bool {
		n, err := presence.Count(ctx, "presentity", "username = ? AND domain = ? AND event = ?", "line100", "example.com", polSLA)
		return err == nil && n == 0
	})
}
