package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/puatest"
	"github.com/puaside/puaside/store"
)

// readyz polls /readyz until ok says its answer is the one wanted, or
// fails after 20 s.
func readyz(t *testing.T, base, what string, ok func(code int, check, msg string) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := call(t, "GET", base+"/readyz", "")
		var r struct{ Check, Error string }
		_ = json.Unmarshal([]byte(body), &r)
		if ok(code, r.Check, r.Error) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: /readyz still %d %s", what, code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestReadyzTrackerStoreWrites: when the usrloc tracker's contact writes,
// or the dialoginfo tracker's call writes, keep failing (their table is
// gone), /readyz turns unready naming "store writes" and the tracker; once
// the table is back, the next flush makes it ready again.
func TestReadyzTrackerStoreWrites(t *testing.T) {
	ps := puatest.NewPresenceServer(t, puatest.ServerOptions{})
	cfg := testConfig(t)
	cfg.PUA.ServerAddress = ps.URI()
	base := startDaemon(t, cfg)
	ctx := context.Background()
	side, err := store.Open(ctx, cfg.DBURL, cfg.DBTable)
	if err != nil {
		t.Fatal(err)
	}
	defer side.Close()
	rename := func(from, to string) {
		t.Helper()
		if _, err := side.X.ExecContext(ctx, fmt.Sprintf("ALTER TABLE %s RENAME TO %s", from, to)); err != nil {
			t.Fatalf("rename %s: %v", from, err)
		}
	}
	post := func(body string) {
		t.Helper()
		if code, resp := call(t, "POST", base+"/v1/events", body); code != 202 {
			t.Fatalf("POST /v1/events: %d %s", code, resp)
		}
	}
	ready := func(code int, _, _ string) bool { return code == 200 }
	readyz(t, base, "at start", ready)

	for _, c := range []struct {
		name, table, tracker, event string
	}{
		{"usrloc", "puaside_contacts", "usrloc contacts",
			`{"type":"registration","aor":"sip:alice@example.com","contacts":[{"uri":"sip:alice@10.0.0.1","expires":3600}]}`},
		{"dialoginfo", "puaside_dialogs", "dialoginfo calls",
			`{"type":"dialog","call_id":"c1","from_tag":"f1","to_tag":"t1","from":"sip:alice@example.com","to":"sip:bob@example.com","state":"confirmed","code":200}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			rename(c.table, c.table+"_away")
			restored := false
			defer func() {
				if !restored {
					rename(c.table+"_away", c.table)
				}
			}()
			post(c.event)
			readyz(t, base, "writes failing", func(code int, check, msg string) bool {
				return code == 503 && check == "store writes" && strings.Contains(msg, c.tracker)
			})
			rename(c.table+"_away", c.table)
			restored = true
			readyz(t, base, "table back", ready)
		})
	}
	if n := ps.Count(); n == 0 {
		t.Error("no PUBLISH reached the presence server")
	}
}
