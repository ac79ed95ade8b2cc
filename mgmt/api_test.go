package mgmt_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/metrics"
	"github.com/puaside/puaside/mgmt"
	"github.com/puaside/puaside/mgmt/mgmttest"
	"github.com/puaside/puaside/pua"
)

// The real engine provides what the API drives.
var _ mgmt.Engine = (*pua.Engine)(nil)

// fixture is a running server with fake components.
type fixture struct {
	srv   *mgmt.Server
	base  string
	eng   *mgmttest.Engine
	regs  *mgmttest.Registrations
	lines *mgmttest.Lines
	m     *metrics.Metrics
}

func start(t *testing.T, cfg mgmt.Config, deps mgmt.Deps, m *metrics.Metrics) *mgmt.Server {
	t.Helper()
	cfg.HTTPListen = "127.0.0.1:0"
	srv, err := mgmt.New(cfg, deps, mgmt.Options{Metrics: m})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Start(ctx); err != nil {
		cancel()
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := srv.Stop(sctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
		cancel()
	})
	return srv
}

func newFixture(t *testing.T, mod func(*mgmt.Config)) *fixture {
	t.Helper()
	f := &fixture{
		eng: mgmttest.NewEngine(),
		regs: mgmttest.NewRegistrations(
			mgmttest.Registration{AoR: "sip:alice@example.com", State: "open", Contacts: []mgmttest.Contact{{URI: "sip:alice@10.0.0.1:5060", Expires: 300}}},
			mgmttest.Registration{AoR: "sip:bob@example.com", State: "closed"},
		),
		lines: mgmttest.NewLines(),
		m:     metrics.New(),
	}
	cfg := mgmt.DefaultConfig()
	cfg.WaitTimeout = 2 * time.Second
	if mod != nil {
		mod(&cfg)
	}
	f.srv = start(t, cfg, mgmt.Deps{
		Engine:        f.eng,
		Registrations: f.regs,
		Dialogs:       &mgmttest.Dialogs{List: []mgmttest.Dialog{{CallID: "c1", AoR: "sip:alice@example.com", State: "confirmed"}}},
		Lines:         f.lines,
		Events: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusAccepted)
		}),
	}, f.m)
	f.base = "http://" + f.srv.Addr()
	return f
}

type answer struct {
	code int
	raw  string
	obj  map[string]any
	hdr  http.Header
}

func do(t *testing.T, method, u, body string, hdr map[string]string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{code: resp.StatusCode, raw: string(b), hdr: resp.Header}
	_ = json.Unmarshal(b, &a.obj)
	return a
}

func num(v any) int {
	f, _ := v.(float64)
	return int(f)
}

func TestPublishAndErrors(t *testing.T) {
	const pidf = `<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com"/>`
	body, _ := json.Marshal(pidf)
	ok := `{"presentity_uri":"sip:alice@example.com","event":"presence","expires":600,"body":` + string(body) + `}`
	tests := []struct {
		name      string
		reply     func(pua.PublishRequest) pua.Result
		block     bool
		body      string
		hdr       map[string]string
		wantCode  int
		wantField string
		wantSIP   int
		wantCalls int // engine calls expected
	}{
		{name: "ok", body: ok, wantCode: 200, wantSIP: 200, wantCalls: 1},
		{name: "sip 489", body: ok, reply: func(pua.PublishRequest) pua.Result { return pua.Result{Status: 489, Reason: "Bad Event"} },
			wantCode: 502, wantSIP: 489, wantCalls: 2}, // PublishWait, then Remove: a refusal ends it
		{name: "transaction timeout", body: ok, reply: func(pua.PublishRequest) pua.Result {
			return pua.Result{Status: 408, Reason: "Request Timeout", Err: fmt.Errorf("publish: %w", sip.ErrTransactionTimeout)}
		}, wantCode: 504, wantSIP: 408, wantCalls: 2},
		{name: "no reply before wait_timeout", body: ok, block: true, wantCode: 504, wantCalls: 2},
		{name: "timeout kept", body: strings.TrimSuffix(ok, "}") + `,"keep_on_timeout":true}`, block: true, wantCode: 504, wantCalls: 1},
		{name: "transport error", body: ok, reply: func(pua.PublishRequest) pua.Result {
			return pua.Result{Err: fmt.Errorf("dial: connection refused")}
		}, wantCode: 502, wantCalls: 2},
		{name: "unknown event", body: `{"presentity_uri":"sip:a@example.com","event":"nosuch","body":"x"}`, wantCode: 400, wantField: "event", wantCalls: 1},
		{name: "missing event", body: `{"presentity_uri":"sip:a@example.com","body":"x"}`, wantCode: 400, wantField: "event"},
		{name: "bad uri", body: `{"presentity_uri":"alice","event":"presence","body":"x"}`, wantCode: 400, wantField: "presentity_uri"},
		{name: "uri with space", body: `{"presentity_uri":"sip:a b@x","event":"presence","body":"x"}`, wantCode: 400, wantField: "presentity_uri"},
		{name: "missing uri", body: `{"event":"presence","body":"x"}`, wantCode: 400, wantField: "presentity_uri"},
		{name: "missing body", body: `{"presentity_uri":"sip:a@example.com","event":"presence"}`, wantCode: 400, wantField: "body"},
		{name: "negative expires", body: `{"presentity_uri":"sip:a@example.com","event":"presence","expires":-1,"body":"x"}`, wantCode: 400, wantField: "expires"},
		{name: "expires wrong type", body: `{"presentity_uri":"sip:a@example.com","event":"presence","expires":"600","body":"x"}`, wantCode: 400, wantField: "expires"},
		{name: "headers wrong type", body: `{"presentity_uri":"sip:a@example.com","event":"presence","extra_headers":"X: y","body":"x"}`, wantCode: 400, wantField: "extra_headers"},
		{name: "bad header", body: `{"presentity_uri":"sip:a@example.com","event":"presence","extra_headers":["no colon"],"body":"x"}`, wantCode: 400, wantField: "extra_headers"},
		{name: "unknown field", body: `{"presentity_uri":"sip:a@example.com","event":"presence","bogus":1,"body":"x"}`, wantCode: 400, wantField: "bogus"},
		{name: "malformed", body: `{"presentity_uri":`, wantCode: 400},
		{name: "not an object", body: `[1,2]`, wantCode: 400},
		{name: "trailing data", body: ok + `{}`, wantCode: 400},
		{name: "empty", body: ``, wantCode: 400},
		{name: "oversize", body: `{"presentity_uri":"sip:a@example.com","event":"presence","body":"` + strings.Repeat("x", 5000) + `"}`, wantCode: 413},
		{name: "wrong etag", body: `{"presentity_uri":"sip:a@example.com","event":"presence","etag":"nope","body":"x"}`, wantCode: 412, wantField: "etag", wantCalls: 1},
		{name: "remove unknown", body: `{"presentity_uri":"sip:a@example.com","event":"presence","expires":0}`, wantCode: 404, wantCalls: 1},
		{name: "remove unknown event", body: `{"presentity_uri":"sip:a@example.com","event":"nosuch","expires":0}`, wantCode: 400, wantField: "event", wantCalls: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(c *mgmt.Config) {
				c.MaxBody = 4096
				if tc.block {
					c.WaitTimeout = 50 * time.Millisecond
				}
			})
			f.eng.PublishReply, f.eng.Block = tc.reply, tc.block
			a := do(t, "POST", f.base+"/v1/publish", tc.body, tc.hdr)
			if a.code != tc.wantCode {
				t.Fatalf("code %d, want %d: %s", a.code, tc.wantCode, a.raw)
			}
			if ct := a.hdr.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if tc.wantCode != 200 {
				if s, _ := a.obj["error"].(string); s == "" {
					t.Errorf("no error message: %s", a.raw)
				}
			}
			if got, _ := a.obj["field"].(string); got != tc.wantField {
				t.Errorf("field %q, want %q: %s", got, tc.wantField, a.raw)
			}
			if got := num(a.obj["status"]); got != tc.wantSIP {
				t.Errorf("status %d, want %d: %s", got, tc.wantSIP, a.raw)
			}
			if tc.wantSIP == 489 && a.obj["reason"] != "Bad Event" {
				t.Errorf("reason %v", a.obj["reason"])
			}
			if tc.wantCode == 200 {
				if a.obj["etag"] != "etag-1" || num(a.obj["expires"]) != 600 {
					t.Errorf("answer %s", a.raw)
				}
			}
			if n := len(f.eng.Calls()); n != tc.wantCalls {
				t.Errorf("engine calls %v, want %d", f.eng.Calls(), tc.wantCalls)
			}
		})
	}
}

func TestPublishRefreshModifyRemove(t *testing.T) {
	f := newFixture(t, nil)
	a := do(t, "POST", f.base+"/v1/publish", `{"presentity_uri":"sip:a@example.com","event":"dialog","id":"x","body":"<d/>","extra_headers":["Sender: sip:p@10.0.0.2"]}`, nil)
	if a.code != 200 {
		t.Fatalf("publish: %d %s", a.code, a.raw)
	}
	etag := a.obj["etag"].(string)
	// refresh by etag without body reuses the stored body
	a = do(t, "POST", f.base+"/v1/publish", `{"presentity_uri":"sip:a@example.com","event":"dialog","id":"x","etag":"`+etag+`"}`, nil)
	if a.code != 200 {
		t.Fatalf("refresh: %d %s", a.code, a.raw)
	}
	pubs := f.eng.Publications()
	if len(pubs) != 1 || string(pubs[0].Body) != "<d/>" || pubs[0].Flag != pua.FlagRPCPublish ||
		len(pubs[0].ExtraHeaders) != 0 || pubs[0].ContentType != "application/dialog-info+xml" {
		t.Fatalf("publications %+v", pubs)
	}
	// remove with the stale etag is refused
	a = do(t, "DELETE", f.base+"/v1/publications?presentity_uri=sip:a@example.com&event=dialog&id=x&etag="+etag, "", nil)
	if a.code != 412 {
		t.Fatalf("stale remove: %d %s", a.code, a.raw)
	}
	a = do(t, "DELETE", f.base+"/v1/publications?presentity_uri=sip:a@example.com&event=dialog&id=x", "", nil)
	if a.code != 200 || len(f.eng.Publications()) != 0 {
		t.Fatalf("remove: %d %s", a.code, a.raw)
	}
	a = do(t, "DELETE", f.base+"/v1/publications?presentity_uri=sip:a@example.com&event=dialog&id=x", "", nil)
	if a.code != 404 {
		t.Fatalf("remove again: %d %s", a.code, a.raw)
	}
}

func TestSubscribeAndNotifyVisible(t *testing.T) {
	f := newFixture(t, nil)
	a := do(t, "POST", f.base+"/v1/subscribe", `{"presentity_uri":"sip:bob@example.com","watcher_uri":"sip:mon@example.com","event":"presence","expires":300}`, nil)
	if a.code != 200 || num(a.obj["status"]) != 202 || num(a.obj["expires"]) != 300 {
		t.Fatalf("subscribe: %d %s", a.code, a.raw)
	}
	subs := f.eng.Subscriptions()
	if len(subs) != 1 || subs[0].Flag != pua.FlagRPCSubscribe {
		t.Fatalf("subscriptions %+v", subs)
	}
	s := subs[0]
	s.LastNotifyCT, s.LastNotifyDoc = "application/pidf+xml", []byte("<presence/>")
	f.eng.SetSubscription(s)
	a = do(t, "GET", f.base+"/v1/subscriptions?watcher=sip:mon@example.com", "", nil)
	items, _ := a.obj["items"].([]any)
	if a.code != 200 || len(items) != 1 || items[0].(map[string]any)["last_notify_body"] != "<presence/>" {
		t.Fatalf("listing: %d %s", a.code, a.raw)
	}
	for _, tc := range []struct{ body, field string }{
		{`{"presentity_uri":"sip:bob@example.com","event":"presence"}`, "watcher_uri"},
		{`{"presentity_uri":"sip:bob@example.com","watcher_uri":"sip:m@x","event":"nosuch"}`, "event"},
		{`{"presentity_uri":"sip:bob@example.com","watcher_uri":"sip:m@x","event":"presence","expires":true}`, "expires"},
	} {
		a = do(t, "POST", f.base+"/v1/subscribe", tc.body, nil)
		if a.code != 400 || a.obj["field"] != tc.field {
			t.Errorf("%s: %d %s", tc.body, a.code, a.raw)
		}
	}
	q := "presentity_uri=" + url.QueryEscape("sip:bob@example.com") + "&watcher_uri=" + url.QueryEscape("sip:mon@example.com") + "&event=presence"
	if a = do(t, "DELETE", f.base+"/v1/subscriptions?"+q, "", nil); a.code != 200 || len(f.eng.Subscriptions()) != 0 {
		t.Fatalf("unsubscribe: %d %s", a.code, a.raw)
	}
	if a = do(t, "DELETE", f.base+"/v1/subscriptions?"+q, "", nil); a.code != 404 {
		t.Fatalf("unsubscribe again: %d %s", a.code, a.raw)
	}
}

func TestToken(t *testing.T) {
	f := newFixture(t, func(c *mgmt.Config) { c.Token = "s3cret" })
	tests := []struct {
		method, path string
		hdr          map[string]string
		want         int
	}{
		{"GET", "/healthz", nil, 200},
		{"GET", "/v1/publications", nil, 401},
		{"GET", "/v1/publications", map[string]string{"Authorization": "Bearer wrong"}, 401},
		{"GET", "/v1/publications", map[string]string{"Authorization": "s3cret"}, 401},
		{"GET", "/v1/publications", map[string]string{"Authorization": "Bearer s3cret"}, 200},
		{"GET", "/metrics", nil, 401},
		{"GET", "/metrics", map[string]string{"Authorization": "Bearer s3cret"}, 200},
		{"POST", "/RPC", nil, 401},
		{"GET", "/readyz", nil, 401},
		{"GET", "/nosuch", nil, 401},
	}
	for _, tc := range tests {
		a := do(t, tc.method, f.base+tc.path, "", tc.hdr)
		if a.code != tc.want {
			t.Errorf("%s %s %v: %d, want %d: %s", tc.method, tc.path, tc.hdr, a.code, tc.want, a.raw)
		}
		if tc.want == 401 && a.obj["error"] == nil {
			t.Errorf("%s %s: not a JSON error: %s", tc.method, tc.path, a.raw)
		}
	}
}

func TestListingFiltersAndPagination(t *testing.T) {
	f := newFixture(t, nil)
	for i := range 5 {
		ev := "presence"
		if i%2 == 1 {
			ev = "dialog"
		}
		f.eng.SetPublication(pua.PublicationInfo{Key: pua.Key{PresURI: fmt.Sprintf("sip:u%d@example.com", i), Event: ev, ID: "usrloc"},
			Flag: pua.FlagUsrloc, State: pua.StateActive, ETag: fmt.Sprint("e", i)})
	}
	f.eng.SetPublication(pua.PublicationInfo{Key: pua.Key{PresURI: "sip:u0@example.com", Event: "dialog"}, State: pua.StateFailed, Flag: pua.FlagDialogPublish})
	tests := []struct {
		query     string
		wantCode  int
		wantTotal int
		wantURIs  []string
	}{
		{"", 200, 6, []string{"sip:u0@example.com", "sip:u0@example.com", "sip:u1@example.com", "sip:u2@example.com", "sip:u3@example.com", "sip:u4@example.com"}},
		{"event=presence", 200, 3, []string{"sip:u0@example.com", "sip:u2@example.com", "sip:u4@example.com"}},
		{"event=presence&limit=2", 200, 3, []string{"sip:u0@example.com", "sip:u2@example.com"}},
		{"event=presence&limit=2&offset=2", 200, 3, []string{"sip:u4@example.com"}},
		{"offset=100", 200, 6, nil},
		{"state=failed", 200, 1, []string{"sip:u0@example.com"}},
		{"owner=dialoginfo", 200, 1, []string{"sip:u0@example.com"}},
		{"presentity=sip:u3@example.com", 200, 1, []string{"sip:u3@example.com"}},
		{"limit=abc", 400, 0, nil},
		{"offset=-1", 400, 0, nil},
		{"bogus=1", 400, 0, nil},
	}
	for _, tc := range tests {
		a := do(t, "GET", f.base+"/v1/publications?"+tc.query, "", nil)
		if a.code != tc.wantCode {
			t.Errorf("%q: %d %s", tc.query, a.code, a.raw)
			continue
		}
		if tc.wantCode != 200 {
			if a.obj["field"] == "" || a.obj["field"] == nil {
				t.Errorf("%q: no field: %s", tc.query, a.raw)
			}
			continue
		}
		if num(a.obj["total"]) != tc.wantTotal {
			t.Errorf("%q: total %v, want %d", tc.query, a.obj["total"], tc.wantTotal)
		}
		items, ok := a.obj["items"].([]any)
		if !ok {
			t.Errorf("%q: items not an array: %s", tc.query, a.raw)
			continue
		}
		var uris []string
		for _, it := range items {
			uris = append(uris, it.(map[string]any)["presentity_uri"].(string))
		}
		if fmt.Sprint(uris) != fmt.Sprint(tc.wantURIs) {
			t.Errorf("%q: %v, want %v", tc.query, uris, tc.wantURIs)
		}
	}
}

func TestTrackerEndpoints(t *testing.T) {
	f := newFixture(t, nil)
	esc := url.PathEscape("sip:alice@example.com")
	steps := []struct {
		method, path, body string
		want               int
		contains           string
	}{
		{"GET", "/v1/registrations", "", 200, `"total":2`},
		{"GET", "/v1/registrations?presentity=sip:bob@example.com", "", 200, `"total":1`},
		{"GET", "/v1/registrations?limit=1&offset=1", "", 200, `sip:bob@example.com`},
		{"GET", "/v1/registrations/" + esc, "", 200, `sip:alice@10.0.0.1:5060`},
		{"GET", "/v1/registrations/" + url.PathEscape("sip:nobody@example.com"), "", 404, `no registration`},
		{"PUT", "/v1/flags/" + esc, "", 200, `"enabled":true`},
		{"PUT", "/v1/flags/" + url.PathEscape("sip:bob@example.com"), `{"enabled":false}`, 200, `"enabled":false`},
		{"PUT", "/v1/flags/" + esc, `{"enabled":"yes"}`, 400, `"field":"enabled"`},
		{"GET", "/v1/flags", "", 200, `{"items":[{"aor":"sip:alice@example.com","enabled":true},{"aor":"sip:bob@example.com","enabled":false}],"total":2}`},
		{"DELETE", "/v1/flags/" + esc, "", 200, `"cleared":true`},
		{"DELETE", "/v1/flags/" + esc, "", 404, `no such record`},
		{"GET", "/v1/dialogs", "", 200, `"call_id":"c1"`},
		{"PUT", "/v1/lines/" + url.PathEscape("sip:line1@example.com"), `{"members":["sip:p1@10.0.0.5"]}`, 200, `sip:p1@10.0.0.5`},
		{"PUT", "/v1/lines/" + url.PathEscape("sip:line2@example.com"), ``, 200, `"members":[]`},
		{"PUT", "/v1/lines/" + url.PathEscape("sip:line3@example.com"), `{"members":["phone"]}`, 400, `"field":"members[0]"`},
		{"PUT", "/v1/lines/" + url.PathEscape("sip:line3@example.com"), `{"members":"sip:x@y"}`, 400, `"field":"members"`},
		{"GET", "/v1/lines", "", 200, `"total":2`},
		{"DELETE", "/v1/lines/" + url.PathEscape("sip:line2@example.com"), "", 200, `"removed":true`},
		{"DELETE", "/v1/lines/" + url.PathEscape("sip:line2@example.com"), "", 404, `"error"`},
		{"POST", "/v1/events", `{"x":1}`, 202, ``},
	}
	for _, s := range steps {
		a := do(t, s.method, f.base+s.path, s.body, nil)
		if a.code != s.want || !strings.Contains(a.raw, s.contains) {
			t.Errorf("%s %s: %d %s; want %d containing %s", s.method, s.path, a.code, a.raw, s.want, s.contains)
		}
	}
}

func TestFeatureNotEnabledAndRouting(t *testing.T) {
	srv := start(t, mgmt.DefaultConfig(), mgmt.Deps{}, nil)
	base := "http://" + srv.Addr()
	tests := []struct {
		method, path string
		want         int
		allow        string
	}{
		{"POST", "/v1/publish", 404, ""},
		{"GET", "/v1/publications", 404, ""},
		{"GET", "/v1/registrations", 404, ""},
		{"GET", "/v1/dialogs", 404, ""},
		{"GET", "/v1/lines", 404, ""},
		{"POST", "/v1/events", 404, ""},
		{"GET", "/metrics", 404, ""},
		{"GET", "/healthz", 200, ""},
		{"GET", "/readyz", 200, ""},
		{"GET", "/nosuch", 404, ""},
		{"GET", "/v1/publish", 405, "POST"},
		{"PATCH", "/v1/publications", 405, "GET, DELETE"},
		{"POST", "/v1/flags/sip:a@b", 405, "PUT, DELETE"},
	}
	for _, tc := range tests {
		body := ""
		if tc.method == "POST" {
			body = `{"presentity_uri":"sip:a@b","event":"presence","body":"x"}`
		}
		a := do(t, tc.method, base+tc.path, body, nil)
		if a.code != tc.want || a.obj == nil {
			t.Errorf("%s %s: %d %s, want %d JSON", tc.method, tc.path, a.code, a.raw, tc.want)
		}
		if tc.want >= 400 && a.obj["error"] == nil {
			t.Errorf("%s %s: no error field: %s", tc.method, tc.path, a.raw)
		}
		if got := a.hdr.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
}

func TestReadyz(t *testing.T) {
	dbDown := fmt.Errorf("ping: connection refused")
	srv := start(t, mgmt.DefaultConfig(), mgmt.Deps{Ready: []mgmt.ReadyCheck{
		{Name: "listeners", Check: func(context.Context) error { return nil }},
		{Name: "database", Check: func(context.Context) error { return dbDown }},
	}}, nil)
	a := do(t, "GET", "http://"+srv.Addr()+"/readyz", "", nil)
	if a.code != 503 || a.obj["check"] != "database" || !strings.Contains(a.raw, "connection refused") {
		t.Fatalf("readyz: %d %s", a.code, a.raw)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*mgmt.Config)
		ok   bool
	}{
		{"default", func(*mgmt.Config) {}, true},
		{"empty listen", func(c *mgmt.Config) { c.HTTPListen = "" }, false},
		{"no port", func(c *mgmt.Config) { c.HTTPListen = "localhost" }, false},
		{"cert without key", func(c *mgmt.Config) { c.TLSCert = "a.pem" }, false},
		{"zero max_body", func(c *mgmt.Config) { c.MaxBody = 0 }, false},
		{"zero wait", func(c *mgmt.Config) { c.WaitTimeout = 0 }, false},
	}
	for _, tc := range tests {
		c := mgmt.DefaultConfig()
		tc.mod(&c)
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
		if _, err := mgmt.New(c, mgmt.Deps{}, mgmt.Options{}); (err == nil) != tc.ok {
			t.Errorf("%s: New: %v", tc.name, err)
		}
	}
}
