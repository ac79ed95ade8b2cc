package mgmt_test

import (
	"testing"

	"github.com/puaside/puaside/board"
	"github.com/puaside/puaside/metrics"
	"github.com/puaside/puaside/mgmt"
)

// TestBoardToken: with http.token set, the board's page and static files
// load without it (they hold no data, and a browser cannot send a header
// when it opens a page), while its data (the event stream and an AoR's
// detail) needs the bearer token like every listing; without a board the
// endpoints answer "feature not enabled".
func TestBoardToken(t *testing.T) {
	m := metrics.New()
	b := board.New(board.Options{})
	defer b.Close()
	b.Contacts("sip:a@example.com", []board.Contact{{URI: "sip:a@10.0.0.1"}})
	cfg := mgmt.DefaultConfig()
	cfg.Token = "s3cret"
	srv := start(t, cfg, mgmt.Deps{Board: b}, m)
	base := "http://" + srv.Addr()
	for _, p := range []string{"/board", "/board/assets/board.js", "/board/assets/board.css"} {
		if a := do(t, "GET", base+p, "", nil); a.code != 200 {
			t.Errorf("GET %s without the token: %d %s", p, a.code, a.raw)
		}
	}
	for _, p := range []string{"/board/aor?aor=sip:a@example.com", "/board/events"} {
		if a := do(t, "GET", base+p, "", nil); a.code != 401 {
			t.Errorf("GET %s without the token: %d, want 401", p, a.code)
		}
	}
	if a := do(t, "GET", base+"/board/aor?aor=sip:a@example.com", "", map[string]string{"Authorization": "Bearer s3cret"}); a.code != 200 || a.obj["aor"] != "sip:a@example.com" {
		t.Errorf("GET /board/aor with the token: %d %s", a.code, a.raw)
	}
	if a := do(t, "POST", base+"/board", "", map[string]string{"Authorization": "Bearer s3cret"}); a.code != 405 {
		t.Errorf("POST /board: %d, want 405", a.code)
	}

	off := start(t, mgmt.DefaultConfig(), mgmt.Deps{}, nil)
	if a := do(t, "GET", "http://"+off.Addr()+"/board", "", nil); a.code != 404 || a.obj["error"] != "feature not enabled: board" {
		t.Errorf("GET /board without a board: %d %s", a.code, a.raw)
	}
}
