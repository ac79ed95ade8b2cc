package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/pua"
	"github.com/puaside/puaside/store"
)

const alicePIDF = `<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com">
  <tuple id="e2e1"><status><basic>open</basic></status><contact>sip:alice@127.0.0.1:5999</contact></tuple>
</presence>
`

// TestEnginePublishesToKamailio drives the pua engine against a real Kamailio
// presence server: a watcher subscribed at Kamailio sees the published
// state; the publication outlives several expiry periods through refreshes;
// a restart of puaside carries on with the stored ETag (one presentity row,
// never two); a removal makes the watcher see the state go.
func TestEnginePublishesToKamailio(t *testing.T) {
	presence := presenceServer(t)
	cfg := baseConfig(t, presence)
	ps := startPuaside(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	phone := sipphone.NewPhone(t, "watcher", "example.com")
	alice := sip.Uri{Scheme: "sip", User: "alice", Host: "example.com"}
	w, err := phone.Watch(ctx, presence.Addr(), alice, "presence", sipphone.WatchOptions{Expires: 300})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}

	key := pua.Key{PresURI: "sip:alice@example.com", Event: "presence", ID: "e2e"}
	const expires = 4 * time.Second
	res, err := ps.d.Engine().PublishWait(ctx, pua.PublishRequest{Key: key, Body: []byte(alicePIDF), Expires: expires, Flag: pua.FlagRPCPublish})
	if err != nil || res.Status != 200 || res.ETag == "" {
		t.Fatalf("publish: %+v, %v", res, err)
	}
	wctx, wcancel := context.WithTimeout(ctx, waitLimit)
	if _, err := w.WaitFor(wctx, func(b string) bool { return strings.Contains(b, "<basic>open</basic>") && strings.Contains(b, "e2e1") }); err != nil {
		t.Fatalf("watcher never saw open: %v", err)
	}
	wcancel()

	rows := func() int {
		n, err := presence.Count(ctx, "presentity", "username = ? AND domain = ? AND event = ?", "alice", "example.com", "presence")
		if err != nil {
			t.Fatalf("count presentity: %v", err)
		}
		return n
	}
	// Several expiry periods: the engine must refresh in time every time.
	time.Sleep(4 * expires)
	if n := rows(); n != 1 {
		t.Fatalf("after refreshes: %d presentity rows, want 1", n)
	}
	for _, n := range w.Notifications() {
		if strings.Contains(n.Body, "closed") || n.Terminated() {
			t.Fatalf("watcher saw the state go during refreshes: %+v", n)
		}
	}
	info := publication(t, ps, key)
	if info.State != pua.StateActive || info.LastStatus != 200 {
		t.Fatalf("publication after refreshes: %+v", info)
	}

	// Restart: the stored record (ETag included) is flushed at stop and
	// loaded at start; the next request is a refresh of the same
	// publication, not a new one. (A refresh may happen until the stop,
	// so the ETag to compare is the one the stopped engine holds.)
	ps.stop()
	etagBefore := publication(t, ps, key).ETag
	// The stop flushed exactly that ETag to the database. (It is read from
	// the table: the restarted engine refreshes at once, so its listing may
	// already show the next ETag.)
	if stored := storedETag(t, cfg.DBURL, key); stored != etagBefore {
		t.Fatalf("stored ETag %q, want %q", stored, etagBefore)
	}
	ps = startPuaside(t, cfg)
	eventually(t, "a refresh after restart", func() bool {
		p, ok := lookup(ps, key)
		return ok && p.ETag != etagBefore && p.State == pua.StateActive
	})
	if n := rows(); n != 1 {
		t.Fatalf("after restart: %d presentity rows, want 1", n)
	}

	// Remove: the watcher sees the state go.
	res, err = ps.d.Engine().RemoveWait(ctx, key)
	if err != nil || res.Status != 200 {
		t.Fatalf("remove: %+v, %v", res, err)
	}
	wctx, wcancel = context.WithTimeout(ctx, waitLimit)
	defer wcancel()
	if _, err := w.WaitFor(wctx, func(b string) bool { return strings.Contains(b, "<basic>closed</basic>") }); err != nil {
		t.Fatalf("watcher never saw the removal: %v", err)
	}
	eventually(t, "presentity row removed", func() bool { return rows() == 0 })
}

// lookup finds a publication in the engine's listing.
func lookup(ps *puaside, key pua.Key) (pua.PublicationInfo, bool) {
	for _, p := range ps.d.Engine().Publications() {
		if p.Key == key {
			return p, true
		}
	}
	return pua.PublicationInfo{}, false
}

// publication returns a publication or fails the test.
func publication(t *testing.T, ps *puaside, key pua.Key) pua.PublicationInfo {
	t.Helper()
	p, ok := lookup(ps, key)
	if !ok {
		t.Fatalf("no publication %+v", key)
	}
	return p
}

// storedETag reads a publication's ETag from puaside's pua table.
func storedETag(t *testing.T, dbURL string, key pua.Key) string {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, dbURL, "pua")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	recs, err := db.LoadRecords(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.PresURI == key.PresURI && r.EventName == key.Event && r.PresID == key.ID {
			return r.ETag
		}
	}
	t.Fatalf("no stored record for %+v", key)
	return ""
}
