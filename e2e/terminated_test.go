package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/pua"
)

// dialogDoc is a dialog-info document for bob with one dialog per id:state.
func dialogDoc(version int, dialogs ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="%d" state="full" entity="sip:bob@example.com">`, version)
	for _, d := range dialogs {
		id, st, _ := strings.Cut(d, ":")
		fmt.Fprintf(&b, `
  <dialog id="%s" call-id="%s" direction="recipient"><state>%s</state></dialog>`, id, id, st)
	}
	b.WriteString("\n</dialog-info>\n")
	return b.String()
}

// TestDialogChangeAfterTerminatedKamailio: a dialog publication whose
// document shows only terminated dialogs (a shared-line phone back to
// idle) is refreshed for a while, then gets a new call. Kamailio skips any
// update of such a stored document (200 with a new ETag it does not
// store, the old expiry kept), so puaside must replace it instead: the
// presence server never logs a skipped update, the new call reaches the
// watcher, and one row is left for the publication.
func TestDialogChangeAfterTerminatedKamailio(t *testing.T) {
	presence := presenceServer(t)
	cfg := baseConfig(t, presence)
	ps := startPuaside(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	phone := sipphone.NewPhone(t, "watcher", "example.com")
	bob := sip.Uri{Scheme: "sip", User: "bob", Host: "example.com"}
	w, err := phone.Watch(ctx, presence.Addr(), bob, "dialog", sipphone.WatchOptions{Expires: 300, Accept: "application/dialog-info+xml"})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	key := pua.Key{PresURI: "sip:bob@example.com", Event: "dialog", ID: "line"}
	const expires = 4 * time.Second
	publish := func(body string) {
		t.Helper()
		res, err := ps.d.Engine().PublishWait(ctx, pua.PublishRequest{Key: key, Body: []byte(body), Expires: expires, Flag: pua.FlagRPCPublish})
		if err != nil || res.Status != 200 {
			t.Fatalf("publish: %+v, %v", res, err)
		}
	}
	in := func(id, state string) func(string) bool {
		return func(b string) bool { return fcDialogIn(id, state)(b) }
	}
	publish(dialogDoc(1, "a:confirmed"))
	waitNotify(ctx, t, w, waitLimit, "call a confirmed", in("a", "confirmed"))
	publish(dialogDoc(2, "a:terminated"))
	waitNotify(ctx, t, w, waitLimit, "call a terminated", in("a", "terminated"))
	// Idle for a few expiry periods: the terminated document is kept
	// alive (replaced at each refresh, since Kamailio would not extend it).
	// Each replacement leaves a moment (between Kamailio's delete and the
	// insert of the new PUBLISH) without a row, never one with two.
	rows := func() int {
		n, err := presence.Count(ctx, "presentity", "username = ? AND event = ?", "bob", "dialog")
		if err != nil {
			t.Fatalf("count presentity: %v", err)
		}
		return n
	}
	for end := time.Now().Add(3 * expires); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if n := rows(); n > 1 {
			t.Fatalf("bob's dialog rows while idle: %d, want at most 1", n)
		}
	}
	eventually(t, "bob's idle document at the server", func() bool { return rows() == 1 })
	publish(dialogDoc(3, "b:early"))
	waitNotify(ctx, t, w, waitLimit, "call b early", in("b", "early"))
	publish(dialogDoc(4, "b:confirmed"))
	waitNotify(ctx, t, w, waitLimit, "call b confirmed", in("b", "confirmed"))
	if n := rows(); n != 1 {
		t.Errorf("bob's dialog rows in call b: %d, want 1", n)
	}
	if strings.Contains(presence.Logs(), "already terminated") {
		t.Errorf("the presence server skipped an update of a terminated document:\n%s", presence.Logs())
	}
}
