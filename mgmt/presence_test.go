package mgmt_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/puaside/puaside/mgmt"
	"github.com/puaside/puaside/mgmt/mgmttest"
)

// fakePresence is the embedded presence server as the API sees it.
type fakePresence struct {
	pubs  []map[string]any
	subs  []map[string]any
	calls []string
}

func (f *fakePresence) Presentities() any { return f.pubs }
func (f *fakePresence) Watchers() any     { return f.subs }

func (f *fakePresence) DeletePresentity(_ context.Context, aor, event string) error {
	f.calls = append(f.calls, "presentity "+aor+" "+event)
	if aor != "sip:alice@example.com" {
		return fmt.Errorf("%w: none", mgmt.ErrNotFound)
	}
	return nil
}

func (f *fakePresence) AuthorizeWatcher(_ context.Context, callID string, allow bool) error {
	f.calls = append(f.calls, fmt.Sprintf("authorize %s %t", callID, allow))
	if callID != "c1" {
		return fmt.Errorf("%w: none", mgmt.ErrNotFound)
	}
	return nil
}

func (f *fakePresence) DeleteWatcher(_ context.Context, callID string) error {
	f.calls = append(f.calls, "watcher "+callID)
	if callID != "c1" {
		return fmt.Errorf("%w: none", mgmt.ErrNotFound)
	}
	return nil
}

func TestPresenceEndpoints(t *testing.T) {
	f := &fakePresence{
		pubs: []map[string]any{{"presentity": "sip:alice@example.com", "event": "presence", "id": "usrloc"},
			{"presentity": "sip:bob@example.com", "event": "dialog", "id": "d1"}},
		subs: []map[string]any{{"presentity": "sip:alice@example.com", "watcher": "sip:bob@example.com", "event": "presence", "call_id": "c1"}},
	}
	srv := start(t, mgmt.DefaultConfig(), mgmt.Deps{Presence: f}, nil)
	base := "http://" + srv.Addr()
	alice := url.PathEscape("sip:alice@example.com")
	steps := []struct {
		method, path, body string
		want               int
		contains           string
	}{
		{"GET", "/v1/presentities", "", 200, `"total":2`},
		{"GET", "/v1/presentities?presentity=sip:bob@example.com", "", 200, `"id":"d1"`},
		{"GET", "/v1/presentities?event=presence", "", 200, `"total":1`},
		{"GET", "/v1/watchers", "", 200, `"call_id":"c1"`},
		{"DELETE", "/v1/presentities/" + alice + "?event=presence", "", 200, `"removed":true`},
		{"DELETE", "/v1/presentities/" + url.PathEscape("sip:carol@example.com"), "", 404, `"error"`},
		{"PUT", "/v1/watchers/c1", `{"status":"active"}`, 200, `"status":"active"`},
		{"PUT", "/v1/watchers/c2", `{"status":"terminated"}`, 404, `"error"`},
		{"PUT", "/v1/watchers/c1", `{"status":"maybe"}`, 400, `"field":"status"`},
		{"DELETE", "/v1/watchers/c1", "", 200, `"removed":true`},
		{"DELETE", "/v1/watchers/c2", "", 404, `"error"`},
	}
	for _, s := range steps {
		a := do(t, s.method, base+s.path, s.body, nil)
		if a.code != s.want || !strings.Contains(a.raw, s.contains) {
			t.Errorf("%s %s: %d %s; want %d containing %s", s.method, s.path, a.code, a.raw, s.want, s.contains)
		}
	}
	want := "[presentity sip:alice@example.com presence presentity sip:carol@example.com  authorize c1 true authorize c2 false watcher c1 watcher c2]"
	if fmt.Sprint(f.calls) != want {
		t.Errorf("calls %v, want %s", f.calls, want)
	}
	// Without the presence server the endpoints say so.
	off := start(t, mgmt.DefaultConfig(), mgmt.Deps{}, nil)
	if a := do(t, "GET", "http://"+off.Addr()+"/v1/watchers", "", nil); a.code != 404 || !strings.Contains(a.raw, "pa") {
		t.Errorf("watchers without pa: %d %s", a.code, a.raw)
	}
}

func TestPolicyEndpoints(t *testing.T) {
	p := mgmttest.NewPolicy()
	srv := start(t, mgmt.DefaultConfig(), mgmt.Deps{Policy: p}, nil)
	base := "http://" + srv.Addr()
	steps := []struct {
		method, path, body string
		want               int
		contains           string
	}{
		{"GET", "/v1/policy", "", 200, `"total":0`},
		{"PUT", "/v1/policy", `{"presentity":"sip:alice@example.com","watcher":"partner.example","action":"allow"}`, 200, `"action":"allow"`},
		{"PUT", "/v1/policy", `{"watcher":"spam.example","action":"deny"}`, 200, `"watcher":"spam.example"`},
		{"PUT", "/v1/policy", `{"watcher":"x.example","action":"maybe"}`, 400, `"field":"action"`},
		{"PUT", "/v1/policy", `{"watcher":"x.example","action":"allow","color":"red"}`, 400, `"error"`},
		{"PUT", "/v1/policy", `{"watcher":"a b","action":"allow"}`, 400, `"error"`},
		{"GET", "/v1/policy", "", 200, `"total":2`},
		{"GET", "/v1/policy?presentity=sip:alice@example.com", "", 200, `"watcher":"partner.example"`},
		{"DELETE", "/v1/policy?watcher=spam.example", "", 200, `"removed":true`},
		{"DELETE", "/v1/policy?watcher=spam.example", "", 404, `"error"`},
		{"DELETE", "/v1/policy?who=me", "", 400, `"error"`},
		{"GET", "/v1/policy", "", 200, `"total":1`},
	}
	for _, s := range steps {
		a := do(t, s.method, base+s.path, s.body, nil)
		if a.code != s.want || !strings.Contains(a.raw, s.contains) {
			t.Errorf("%s %s: %d %s; want %d containing %s", s.method, s.path, a.code, a.raw, s.want, s.contains)
		}
	}
	off := start(t, mgmt.DefaultConfig(), mgmt.Deps{}, nil)
	if a := do(t, "GET", "http://"+off.Addr()+"/v1/policy", "", nil); a.code != 404 || !strings.Contains(a.raw, "pa") {
		t.Errorf("without pa: %d %s", a.code, a.raw)
	}
}
