package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/puaside/puaside/internal/dbtest"
	"github.com/puaside/puaside/internal/sipphone"
	"github.com/puaside/puaside/store"
)

// TestHostileInputDoesNotBlockTheStore: on MariaDB in strict mode and on
// SQLite, behind
// a real Kamailio registrar, a phone registering with a User-Agent of
// invalid UTF-8 and 300 multi-byte characters, a registration event for a
// 300-character AoR, and a 300-character user calling bob block no
// database write: every other contact is stored (the hostile User-Agent
// fitted to its column), the rows that cannot be stored are set aside and
// counted, and bob's lamp and its stored publication follow the call.
func TestHostileInputDoesNotBlockTheStore(t *testing.T) {
	for _, backend := range []string{store.MySQL, store.SQLite} {
		t.Run(backend, func(t *testing.T) { hostileInput(t, backend) })
	}
}

func hostileInput(t *testing.T, backend string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	presence := presenceServer(t)
	cfg := baseConfig(t, presence)
	cfg.DBURL = dbtest.URL(t, backend)
	cfg.Features.BLA = false
	cfg.Usrloc.MinExpires = time.Second
	cfg.Usrloc.FlushInterval = 200 * time.Millisecond
	cfg.Dialoginfo.FlushInterval = 200 * time.Millisecond
	startPuaside(t, cfg)
	reg := registrar(t, "WITH_SIPTRACE", cfg)

	alice := sipphone.NewPhone(t, "alice", "example.com")
	bob := sipphone.NewPhone(t, "bob", "example.com")
	mallory := sipphone.NewPhone(t, "mallory", "example.com")
	mallory.SetUserAgent("\xff\xfe evil " + strings.Repeat("ж", 300))
	long := sipphone.NewPhone(t, strings.Repeat("u", 300), "example.com")
	watcher := sipphone.NewPhone(t, "watcher", "example.com")
	presAlice, err := watcher.Watch(ctx, presence.Addr(), alice.AoR(), "presence", sipphone.WatchOptions{Expires: 600})
	if err != nil {
		t.Fatalf("watch alice: %v", err)
	}
	dlgBob, err := watcher.Watch(ctx, presence.Addr(), bob.AoR(), "dialog", sipphone.WatchOptions{Expires: 600, Accept: "application/dialog-info+xml"})
	if err != nil {
		t.Fatalf("watch bob: %v", err)
	}
	for _, ph := range []*sipphone.Phone{mallory, alice, bob} {
		res, err := ph.Register(ctx, reg.Addr(), 600)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("register %.20s: %v %v", ph.User, res, err)
		}
	}
	waitNotify(ctx, t, presAlice, waitLimit, "alice open", pidfOpen(alice))
	// Kamailio refuses to register a 300-character user; a JSON event
	// brings one in (within ingest.max_uri_length, too long for the AoR
	// column).
	longAoR := "sip:" + strings.Repeat("u", 300) + "@example.com"
	body := `{"type":"registration","aor":"` + longAoR + `","contacts":[{"uri":"sip:u@10.0.0.9","expires":600}]}`
	res, err := http.Post("http://"+cfg.HTTP.HTTPListen+"/v1/events", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("post event: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("post event: %s", res.Status)
	}

	db, err := store.Open(ctx, cfg.DBURL, "pua")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want := []string{"sip:alice@example.com", "sip:bob@example.com", "sip:mallory@example.com"}
	eventually(t, "alice, bob and mallory stored, the long AoR set aside", func() bool {
		if ulScrape(t, cfg).sum("puaside_store_rows_quarantined_total", "table", "puaside_contacts") < 1 {
			return false
		}
		got, err := db.LoadContacts(ctx)
		if err != nil {
			t.Fatalf("load contacts: %v", err)
		}
		for _, aor := range want {
			if len(got[aor]) != 1 {
				return false
			}
		}
		return true
	})
	got, _ := db.LoadContacts(ctx)
	if len(got) != 3 {
		t.Errorf("stored AoRs %d, want 3 (the 300-character AoR set aside)", len(got))
	}
	ua := got["sip:mallory@example.com"][0].UserAgent
	if !utf8.ValidString(ua) || utf8.RuneCountInString(ua) != 255 || !strings.Contains(ua, "evil жж") {
		t.Errorf("mallory's User-Agent stored as %q", ua)
	}

	// The 300-character user calls bob.
	bob.SetPolicy(sipphone.KeepRinging)
	call, err := long.Invite(ctx, reg.Addr(), bob.AoR())
	if err != nil {
		t.Fatalf("invite: %v", err)
	}
	var in *sipphone.IncomingCall
	for in == nil {
		select {
		case ic := <-bob.Incoming():
			if ic.Request.CallID().Value() == call.CallID() {
				in = ic
			}
		case <-ctx.Done():
			t.Fatal("bob never rang")
		}
	}
	waitNotify(ctx, t, dlgBob, waitLimit, "bob early", fcDialogIn(call.CallID(), "early"))
	in.Answer()
	if err := call.WaitAnswer(ctx); err != nil {
		t.Fatalf("answer: %v", err)
	}
	waitNotify(ctx, t, dlgBob, waitLimit, "bob confirmed", fcDialogIn(call.CallID(), "confirmed"))
	eventually(t, "bob's dialog publication stored", func() bool {
		recs, err := db.LoadRecords(ctx)
		if err != nil {
			t.Fatalf("load records: %v", err)
		}
		for _, r := range recs {
			if r.PresURI == "sip:bob@example.com" && r.EventName == "dialog" && r.ETag != "" {
				return true
			}
		}
		return false
	})
	if n := ulScrape(t, cfg).sum("puaside_store_rows_quarantined_total", "table", "pua"); n < 1 {
		t.Errorf("pua rows set aside: %v, want the caller's publication", n)
	}
	if err := call.Bye(ctx); err != nil {
		t.Fatalf("bye: %v", err)
	}
	waitNotify(ctx, t, dlgBob, waitLimit, "bob terminated", fcDialogIn(call.CallID(), "terminated"))
}
