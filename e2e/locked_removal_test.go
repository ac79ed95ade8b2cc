package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/pua"
)

const aliceClosedPIDF = `<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com">
  <tuple id="e2e1"><status><basic>closed</basic></status></tuple>
</presence>
`

// TestRemovalAfterFailedCloseKamailio: Kamailio's presence answers a
// removal (PUBLISH Expires: 0) 200 before it deletes the row, and keeps
// the row when the delete fails on a locked database. While the test holds
// the presence database's write lock, the closed document that follows an
// open one fails (the UPDATE fails: 500, which puaside retries) and the
// publication is then removed, as usrloc does after closed_linger. The
// removal must not go out in place of the closed document: the row it
// would leave behind shows the user open until it expires. Once the lock
// is released the closed document is accepted, the removal follows, and
// no row shows open.
func TestRemovalAfterFailedCloseKamailio(t *testing.T) {
	presence := presenceServer(t)
	cfg := baseConfig(t, presence)
	cfg.PUA.RetryMin, cfg.PUA.RetryMax = 200*time.Millisecond, 400*time.Millisecond
	ps := startPuaside(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	e := ps.d.Engine()
	key := pua.Key{PresURI: "sip:alice@example.com", Event: "presence", ID: "e2e"}
	res, err := e.PublishWait(ctx, pua.PublishRequest{Key: key, Body: []byte(alicePIDF), Expires: 10 * time.Minute, Flag: pua.FlagRPCPublish})
	if err != nil || res.Status != 200 {
		t.Fatalf("publish open: %+v, %v", res, err)
	}

	// The write lock of the presence server's SQLite file (WAL: its reads
	// go on, every write fails at once, db_sqlite has no busy timeout).
	conn, err := presence.DB().Conn(ctx)
	if err != nil {
		t.Fatalf("presence database: %v", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatalf("lock the presence database: %v", err)
	}
	locked := true
	defer func() {
		if locked {
			_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
		}
	}()
	res, err = e.PublishWait(ctx, pua.PublishRequest{Key: key, Body: []byte(aliceClosedPIDF), Expires: 10 * time.Minute, Flag: pua.FlagRPCPublish})
	if err != nil || res.Status < 500 {
		t.Fatalf("closed document under the lock: %+v, %v (want a 5xx)", res, err)
	}
	if err := e.Remove(key); err != nil {
		t.Fatalf("remove: %v", err)
	}
	// Several retries fall under the lock (retry_max 400 ms).
	time.Sleep(3 * time.Second)
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatalf("unlock the presence database: %v", err)
	}
	locked = false

	eventually(t, "publication removed", func() bool { _, ok := lookup(ps, key); return !ok })
	q, err := presence.DB().QueryContext(ctx, "SELECT etag, body FROM presentity WHERE username = 'alice' AND event = 'presence' AND expires > ?", time.Now().Unix())
	if err != nil {
		t.Fatalf("presentity rows: %v", err)
	}
	defer q.Close()
	for q.Next() {
		var etag string
		var body []byte
		if err := q.Scan(&etag, &body); err != nil {
			t.Fatalf("presentity row: %v", err)
		}
		if strings.Contains(string(body), "<basic>open</basic>") {
			t.Errorf("presence server keeps alice open (etag %s) after the publication was removed", etag)
		}
	}
	if err := q.Err(); err != nil {
		t.Fatalf("presentity rows: %v", err)
	}
}
