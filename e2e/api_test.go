package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/puaside/puaside/internal/puatest"
	"github.com/puaside/puaside/mgmt"
)

// ---- a fake presence server ----

// apiFakePub is one PUBLISH the fake presence server received.
type apiFakePub struct {
	User, IfMatch, Expires, Event, Body string
	// Answered is the status the fake replied with (0: no answer).
	Answered int
	// ETag is the SIP-ETag of a 2xx answer.
	ETag string
}

// apiFakeSub is one SUBSCRIBE the fake presence server received, with
// the outcome of the NOTIFY it sent in the dialog.
type apiFakeSub struct {
	User, Expires, Event, Contact string
	// NotifyStatus is the subscriber's answer to our NOTIFY (0: none yet;
	// -1: sending failed).
	NotifyStatus int
}

// apiFakePS is a fake presence server (puatest.PresenceServer) that answers PUBLISH with a
// code chosen per presentity user (200 with SIP-ETag and Expires; 489 for
// "bad"; never for "slow") and SUBSCRIBE with 200, followed by a NOTIFY
// with a body in the dialog.
type apiFakePS struct {
	*puatest.PresenceServer
	// ready is closed once PresenceServer is set: the server serves before
	// NewPresenceServer returns, so a handler waits for it first.
	ready chan struct{}

	mu       sync.Mutex
	notifSeq uint32
	pubs     []apiFakePub
	subs     []*apiFakeSub
}

// apiNotifyBody is the body of the NOTIFY sent for a subscription to user.
func apiNotifyBody(user string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:` + user + `@example.com">` +
		`<tuple id="fake-` + user + `"><status><basic>open</basic></status></tuple></presence>` + "\n"
}

// startAPIFakePS starts the fake; it stops when the test ends.
func startAPIFakePS(t *testing.T) *apiFakePS {
	t.Helper()
	f := &apiFakePS{ready: make(chan struct{})}
	f.PresenceServer = puatest.NewPresenceServer(t, puatest.ServerOptions{Name: "fakeps", Publish: f.onPublish, Subscribe: f.onSubscribe})
	close(f.ready)
	return f
}

func (f *apiFakePS) onPublish(req *sip.Request, tx sip.ServerTransaction) {
	<-f.ready
	p := apiFakePub{User: req.Recipient.User, IfMatch: puatest.Header(req, "SIP-If-Match"), Expires: puatest.Header(req, "Expires"),
		Event: puatest.Header(req, "Event"), Body: string(req.Body())}
	switch p.User {
	case "slow":
		f.record(p)
		// Never answer: hold the transaction (absorbing retransmissions)
		// until the fake stops.
		<-f.Done()
		return
	case "bad":
		p.Answered = 489
		f.record(p)
		_ = tx.Respond(sip.NewResponseFromRequest(req, 489, "Bad Event", nil))
		return
	}
	f.mu.Lock()
	p.ETag = f.NextETag("fake")
	p.Answered = 200
	f.pubs = append(f.pubs, p)
	f.mu.Unlock()
	puatest.AcceptPublish(req, tx, p.ETag)
}

func (f *apiFakePS) record(p apiFakePub) {
	f.mu.Lock()
	f.pubs = append(f.pubs, p)
	f.mu.Unlock()
}

func (f *apiFakePS) onSubscribe(req *sip.Request, tx sip.ServerTransaction) {
	<-f.ready
	s := &apiFakeSub{User: req.Recipient.User, Expires: puatest.Header(req, "Expires"), Event: puatest.Header(req, "Event")}
	if c := req.Contact(); c != nil {
		s.Contact = c.Address.String()
	}
	f.mu.Lock()
	f.subs = append(f.subs, s)
	f.mu.Unlock()
	exp := puatest.RequestExpires(req)
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(sip.NewHeader("Expires", exp))
	res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: f.Port()}})
	if err := tx.Respond(res); err != nil {
		return
	}
	toTag, _ := res.To().Params.Get("tag")
	c := req.Contact()
	if c == nil {
		return
	}
	state := "active;expires=" + exp
	if exp == "0" {
		state = "terminated;reason=timeout"
	}
	f.mu.Lock()
	f.notifSeq++
	cseq := f.notifSeq
	f.mu.Unlock()
	n := sip.NewRequest(sip.NOTIFY, c.Address)
	from := &sip.FromHeader{Address: req.To().Address, Params: sip.NewParams()}
	from.Params.Add("tag", toTag)
	n.AppendHeader(from)
	n.AppendHeader(&sip.ToHeader{Address: req.From().Address, Params: req.From().Params.Clone()})
	cid := sip.CallIDHeader(req.CallID().Value())
	n.AppendHeader(&cid)
	n.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: sip.NOTIFY})
	n.AppendHeader(sip.NewHeader("Event", s.Event))
	n.AppendHeader(sip.NewHeader("Subscription-State", state))
	n.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: f.Port()}})
	ct := sip.ContentTypeHeader("application/pidf+xml")
	n.AppendHeader(&ct)
	n.SetBody([]byte(apiNotifyBody(s.User)))
	f.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		go func() {
			select {
			case <-f.Done():
				cancel()
			case <-ctx.Done():
			}
		}()
		code := -1
		if r, err := f.Client().Do(ctx, n); err == nil {
			code = r.StatusCode
		}
		f.mu.Lock()
		s.NotifyStatus = code
		f.mu.Unlock()
	})
}

// publishes returns the PUBLISHes received for user, in order.
func (f *apiFakePS) publishes(user string) []apiFakePub {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []apiFakePub
	for _, p := range f.pubs {
		if p.User == user {
			out = append(out, p)
		}
	}
	return out
}

// subscribes returns copies of the SUBSCRIBEs received for user.
func (f *apiFakePS) subscribes(user string) []apiFakeSub {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []apiFakeSub
	for _, s := range f.subs {
		if s.User == user {
			out = append(out, *s)
		}
	}
	return out
}

// ---- an HTTP client of the management API ----

type apiCaller struct {
	t     *testing.T
	base  string
	token string
	hc    *http.Client
}

func newAPICaller(t *testing.T, ps *puaside, token string) *apiCaller {
	addr := ps.d.Addrs()["http"][0]
	return &apiCaller{t: t, base: "http://" + addr, token: token, hc: &http.Client{Timeout: waitLimit}}
}

// on returns a copy of c that reports to t (a subtest).
func (c *apiCaller) on(t *testing.T) *apiCaller {
	c2 := *c
	c2.t = t
	return &c2
}

// call sends one request (body: nil, []byte, or a value encoded as JSON)
// and returns the status, headers and body.
func (c *apiCaller) call(method, path string, body any) (int, http.Header, []byte) {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(enc)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, b
}

// callJSON is call, checks the status and decodes the answer into out.
func (c *apiCaller) callJSON(method, path string, body any, wantStatus int, out any) {
	c.t.Helper()
	code, _, b := c.call(method, path, body)
	if code != wantStatus {
		c.t.Fatalf("%s %s: HTTP %d, want %d: %s", method, path, code, wantStatus, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

func (c *apiCaller) publications(q url.Values) mgmt.List[mgmt.Publication] {
	c.t.Helper()
	var l mgmt.List[mgmt.Publication]
	c.callJSON("GET", "/v1/publications?"+q.Encode(), nil, 200, &l)
	return l
}

func (c *apiCaller) subscriptions(q url.Values) mgmt.List[mgmt.Subscription] {
	c.t.Helper()
	var l mgmt.List[mgmt.Subscription]
	c.callJSON("GET", "/v1/subscriptions?"+q.Encode(), nil, 200, &l)
	return l
}

// rpc posts one JSON-RPC request and returns the decoded response.
func (c *apiCaller) rpc(method string, params any) apiRPCReply {
	c.t.Helper()
	var r apiRPCReply
	c.callJSON("POST", "/RPC", map[string]any{"jsonrpc": "2.0", "id": 7, "method": method, "params": params}, 200, &r)
	if string(r.ID) != "7" {
		c.t.Fatalf("rpc %s: id %s, want 7", method, r.ID)
	}
	return r
}

type apiRPCReply struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result"`
	Error   *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// scrape fetches /metrics and parses it with the Prometheus text parser.
func (c *apiCaller) scrape() map[string]*dto.MetricFamily {
	c.t.Helper()
	code, h, b := c.call("GET", "/metrics", nil)
	if code != 200 {
		c.t.Fatalf("/metrics: HTTP %d: %s", code, b)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		c.t.Fatalf("/metrics: Content-Type %q, want text/plain", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		c.t.Fatalf("/metrics does not parse: %v", err)
	}
	return mfs
}

// apiCounter sums the samples of a counter family whose labels include
// all of want.
func apiCounter(mfs map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	mf := mfs[name]
	if mf == nil {
		return 0
	}
	var sum float64
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		ok := true
		for k, v := range want {
			ok = ok && labels[k] == v
		}
		if ok && m.GetCounter() != nil {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

const apiToken = "e2e-secret-token"

func apiPIDF(user string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:` + user + `@example.com">` +
		`<tuple id="api-` + user + `"><status><basic>open</basic></status></tuple></presence>` + "\n"
}

// TestAPIAgainstDaemon drives the management API of an in-process daemon
// over real HTTP, with a fake presence server on the SIP side: publish and
// its SIP outcomes (200, 489, no answer), validation, listings and their
// filters, removal, subscription with NOTIFY, the token, health, JSON-RPC
// in Kamailio's positional form, and metrics.
func TestAPIAgainstDaemon(t *testing.T) {
	fake := startAPIFakePS(t)
	cfg := baseConfig(t, nil)
	cfg.PUA.ServerAddress = fake.URI()
	cfg.PUA.RequestTimeout = time.Second
	// The API's Expires must reach the wire as given: the short first
	// lease (initial_expires) has tests of its own.
	cfg.PUA.InitialExpires = time.Hour
	cfg.HTTP.WaitTimeout = 4 * time.Second
	cfg.HTTP.Token = apiToken
	ps := startPuaside(t, cfg)
	api := newAPICaller(t, ps, apiToken)
	anon := newAPICaller(t, ps, "")

	pub := func(user string, expires int) map[string]any {
		return map[string]any{"presentity_uri": "sip:" + user + "@example.com", "event": "presence",
			"expires": expires, "body": apiPIDF(user)}
	}
	requests := func(mfs map[string]*dto.MetricFamily, status string) float64 {
		return apiCounter(mfs, "puaside_sip_requests_total", map[string]string{"method": "PUBLISH", "event": "presence", "status": status})
	}
	before := api.scrape()
	var aliceETag string

	t.Run("health", func(t *testing.T) {
		api, anon := api.on(t), anon.on(t)
		_ = anon
		for _, c := range []struct {
			who  *apiCaller
			path string
			code int
			want string
		}{
			{anon, "/healthz", 200, "alive"},
			{api, "/healthz", 200, "alive"},
			{api, "/readyz", 200, "ready"},
			{anon, "/readyz", 401, ""},
		} {
			code, _, b := c.who.call("GET", c.path, nil)
			if code != c.code {
				t.Errorf("GET %s (token %v): HTTP %d, want %d: %s", c.path, c.who.token != "", code, c.code, b)
				continue
			}
			if c.want != "" {
				var st map[string]string
				if err := json.Unmarshal(b, &st); err != nil || st["status"] != c.want {
					t.Errorf("GET %s: %s, want status %q", c.path, b, c.want)
				}
			}
		}
	})

	t.Run("token", func(t *testing.T) {
		api, anon := api.on(t), anon.on(t)
		_ = anon
		wrong := newAPICaller(t, ps, "not-the-token")
		for _, c := range []struct {
			who  *apiCaller
			code int
		}{{anon, 401}, {wrong, 401}, {api, 200}} {
			code, h, b := c.who.call("GET", "/v1/publications", nil)
			if code != c.code {
				t.Errorf("token %q: HTTP %d, want %d: %s", c.who.token, code, c.code, b)
			}
			if c.code == 401 {
				if h.Get("WWW-Authenticate") == "" {
					t.Errorf("401 without WWW-Authenticate")
				}
				var e mgmt.ErrorBody
				if json.Unmarshal(b, &e) != nil || e.Error == "" {
					t.Errorf("401 body is not an Error object: %s", b)
				}
			}
		}
		// A publish without the token is refused before reaching SIP.
		n := len(fake.publishes("mallory"))
		if code, _, b := anon.call("POST", "/v1/publish", pub("mallory", 60)); code != 401 {
			t.Errorf("publish without token: HTTP %d: %s", code, b)
		}
		if len(fake.publishes("mallory")) != n {
			t.Errorf("a publish without the token reached the presence server")
		}
	})

	t.Run("publish 200", func(t *testing.T) {
		api, anon := api.on(t), anon.on(t)
		_ = anon
		var res mgmt.SIPResult
		api.callJSON("POST", "/v1/publish", pub("alice", 120), 200, &res)
		ps := fake.publishes("alice")
		if len(ps) != 1 {
			t.Fatalf("fake saw %d PUBLISHes for alice, want 1: %+v", len(ps), ps)
		}
		if res.Status != 200 || res.ETag == "" || res.ETag != ps[0].ETag || res.Expires != 120 {
			t.Fatalf("result %+v, want 200 with the fake's etag %q and expires 120", res, ps[0].ETag)
		}
		if ps[0].Expires != "120" || ps[0].IfMatch != "" || ps[0].Body != apiPIDF("alice") || ps[0].Event != "presence" {
			t.Fatalf("PUBLISH on the wire: %+v", ps[0])
		}
		aliceETag = res.ETag
	})

	t.Run("publish 489", func(t *testing.T) {
		api, anon := api.on(t), anon.on(t)
		_ = anon
		code, _, b := api.call("POST", "/v1/publish", pub("bad", 60))
		// openapi.yaml: a SIP failure is 502 with the SIP status and reason.
		if code != http.StatusBadGateway {
			t.Fatalf("HTTP %d, want 502: %s", code, b)
		}
		var e mgmt.ErrorBody
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("error body %s: %v", b, err)
		}
		if e.Status != 489 || e.Reason != "Bad Event" || !strings.Contains(e.Error, "489") {
			t.Fatalf("error %+v, want SIP 489 Bad Event", e)
		}
		if n := len(fake.publishes("bad")); n < 1 {
			t.Fatalf("fake saw no PUBLISH for bad")
		}
	})

	t.Run("publish without answer", func(t *testing.T) {
		api, anon := api.on(t), anon.on(t)
		_ = anon
		// keep_on_timeout: the engine goes on trying (without it the
		// timeout ends the publication).
		kept := pub("slow", 60)
		kept["keep_on_timeout"] = true
		code, _, b := api.call("POST", "/v1/publish", kept)
		if code != http.StatusGatewayTimeout {
			t.Fatalf("HTTP %d, want 504: %s", code, b)
		}
		var e mgmt.ErrorBody
		if err := json.Unmarshal(b, &e); err != nil || !strings.Contains(e.Error, "no final reply") {
			t.Fatalf("error body %s (%v), want a timeout error", b, err)
		}
		if n := len(fake.publishes("slow")); n < 1 {
			t.Fatalf("fake saw no PUBLISH for slow")
		}
	})

	t.Run("publish validation", func(t *testing.T) {
		api, anon := api.on(t), anon.on(t)
		_ = anon
		for _, c := range []struct {
			name  string
			body  any
			code  int
			field string
		}{
			{"unknown event", map[string]any{"presentity_uri": "sip:alice@example.com", "event": "nosuch", "body": "x"}, 400, "event"},
			{"missing event", map[string]any{"presentity_uri": "sip:alice@example.com", "body": "x"}, 400, "event"},
			{"bad uri", map[string]any{"presentity_uri": "alice@example.com", "event": "presence", "body": "x"}, 400, "presentity_uri"},
			{"unknown field", map[string]any{"presentity_uri": "sip:alice@example.com", "event": "presence", "body": "x", "colour": "red"}, 400, "colour"},
			{"wrong type", map[string]any{"presentity_uri": "sip:alice@example.com", "event": "presence", "body": "x", "expires": "soon"}, 400, "expires"},
			{"negative expires", map[string]any{"presentity_uri": "sip:alice@example.com", "event": "presence", "body": "x", "expires": -1}, 400, "expires"},
			{"no body no etag", map[string]any{"presentity_uri": "sip:alice@example.com", "event": "presence"}, 400, "body"},
			{"wrong etag", map[string]any{"presentity_uri": "sip:alice@example.com", "event": "presence", "etag": "nope"}, 412, "etag"},
			{"malformed", []byte(`{"presentity_uri":`), 400, ""},
		} {
			n := len(fake.publishes("alice"))
			code, _, b := api.call("POST", "/v1/publish", c.body)
			var e mgmt.ErrorBody
			if err := json.Unmarshal(b, &e); err != nil {
				t.Errorf("%s: body %s: %v", c.name, b, err)
				continue
			}
			if code != c.code || e.Field != c.field || e.Error == "" || (c.field != "" && !strings.Contains(e.Error, c.field)) {
				t.Errorf("%s: HTTP %d %+v, want %d naming %q", c.name, code, e, c.code, c.field)
			}
			if len(fake.publishes("alice")) != n {
				t.Errorf("%s: a refused request reached the presence server", c.name)
			}
		}
	})

	t.Run("listings", func(t *testing.T) {
		api, anon := api.on(t), anon.on(t)
		_ = anon
		l := api.publications(url.Values{"presentity": {"sip:alice@example.com"}})
		if l.Total != 1 || len(l.Items) != 1 {
			t.Fatalf("alice: %+v, want one publication", l)
		}
		p := l.Items[0]
		if p.Event != "presence" || p.State != "active" || p.ETag != aliceETag || p.LastStatus != 200 ||
			p.Owner != "api" || p.Body != apiPIDF("alice") || p.Expires == nil {
			t.Fatalf("alice's publication: %+v", p)
		}
		// A manual publish the server refused has ended: no record keeps
		// retrying it or holds a stale entity tag.
		if l := api.publications(url.Values{"presentity": {"sip:bad@example.com"}}); l.Total != 0 {
			t.Fatalf("bad: %+v, want none (a refused manual publish ends)", l)
		}
		for _, c := range []struct {
			q    url.Values
			want []string // presentities
		}{
			{url.Values{"state": {"active"}}, []string{"sip:alice@example.com"}},
			{url.Values{"owner": {"usrloc"}}, nil},
			{url.Values{"event": {"dialog"}}, nil},
			{url.Values{"presentity": {"sip:alice@example.com"}, "event": {"presence"}, "owner": {"api"}}, []string{"sip:alice@example.com"}},
			{url.Values{"owner": {"api"}, "limit": {"1"}}, []string{"sip:alice@example.com"}},
			{url.Values{"owner": {"api"}, "limit": {"1"}, "offset": {"1"}}, []string{"sip:slow@example.com"}},
		} {
			l := api.publications(c.q)
			var got []string
			for _, p := range l.Items {
				got = append(got, p.PresentityURI)
			}
			if strings.Join(got, " ") != strings.Join(c.want, " ") {
				t.Errorf("?%s: %v, want %v", c.q.Encode(), got, c.want)
			}
		}
		if l := api.publications(url.Values{"owner": {"api"}, "limit": {"1"}}); l.Total != 2 {
			t.Errorf("owner=api total %d, want 2 (alice, slow kept on timeout; bad was refused and ended)", l.Total)
		}
		code, _, b := api.call("GET", "/v1/publications?colour=red", nil)
		var e mgmt.ErrorBody
		if code != 400 || json.Unmarshal(b, &e) != nil || e.Field != "colour" {
			t.Errorf("unknown filter: HTTP %d %s, want 400 naming colour", code, b)
		}
	})

	// A subscription goes to its Request-URI (the presentity URI, as in
	// Kamailio's pua.subscribe), not to pua.server_address: address the
	// presentity at the fake presence server.
	carol := "sip:carol@" + fake.Addr()
	erin := "sip:erin@" + fake.Addr()
	t.Run("subscribe and notify", func(t *testing.T) {
		api, anon := api.on(t), anon.on(t)
		_ = anon
		var res mgmt.SIPResult
		api.callJSON("POST", "/v1/subscribe", map[string]any{"presentity_uri": carol,
			"watcher_uri": "sip:watcher@example.com", "event": "presence", "expires": 300}, 200, &res)
		if res.Status != 200 || res.Expires != 300 {
			t.Fatalf("subscribe result %+v, want 200 expires 300", res)
		}
		subs := fake.subscribes("carol")
		if len(subs) != 1 || subs[0].Expires != "300" || subs[0].Event != "presence" || subs[0].Contact != ps.d.Engine().ContactURI() {
			t.Fatalf("SUBSCRIBE on the wire: %+v (engine contact %s)", subs, ps.d.Engine().ContactURI())
		}
		q := url.Values{"presentity": {carol}, "watcher": {"sip:watcher@example.com"}}
		eventually(t, "the NOTIFY body in GET /v1/subscriptions", func() bool {
			l := api.subscriptions(q)
			return l.Total == 1 && l.Items[0].LastNotifyBody == apiNotifyBody("carol")
		})
		s := api.subscriptions(q).Items[0]
		if s.LastNotifyCT != "application/pidf+xml" || s.State != "active" || s.Owner != "api" || s.LastNotify == nil || s.CallID == "" {
			t.Fatalf("subscription: %+v", s)
		}
		eventually(t, "the NOTIFY answered", func() bool { return fake.subscribes("carol")[0].NotifyStatus != 0 })
		if st := fake.subscribes("carol")[0].NotifyStatus; st != 200 {
			t.Fatalf("the daemon answered the NOTIFY with %d, want 200", st)
		}
		if l := api.subscriptions(url.Values{"watcher": {"sip:nobody@example.com"}}); l.Total != 0 {
			t.Fatalf("watcher filter: %+v", l)
		}
	})

	t.Run("jsonrpc", func(t *testing.T) {
		api, anon := api.on(t), anon.on(t)
		_ = anon
		// Kamailio's pua.publish: presentity_uri, expires, event,
		// content_type, id, etag, outbound_proxy, extra_headers, body; "."
		// is none.
		r := api.rpc("pua.publish", []any{"sip:dave@example.com", 600, "presence", "application/pidf+xml", ".", ".", ".", ".", apiPIDF("dave")})
		if r.Error != nil {
			t.Fatalf("pua.publish: error %+v", r.Error)
		}
		var got map[string]any
		if err := json.Unmarshal(r.Result, &got); err != nil {
			t.Fatalf("pua.publish result %s: %v", r.Result, err)
		}
		ps := fake.publishes("dave")
		if len(ps) != 1 || got["SIP-ETag"] != ps[0].ETag || got["Expires"] != float64(600) || len(got) != 2 {
			t.Fatalf("pua.publish result %s, want {SIP-ETag, Expires: 600} matching the fake (fake saw %+v)", r.Result, ps)
		}
		if ps[0].Expires != "600" || ps[0].Body != apiPIDF("dave") || ps[0].IfMatch != "" {
			t.Fatalf("PUBLISH on the wire: %+v", ps[0])
		}
		// A SIP failure is an error whose code is the SIP status.
		r = api.rpc("pua.publish", []any{"sip:bad@example.com", 60, "presence", ".", "rpc", ".", ".", ".", apiPIDF("bad")})
		if r.Error == nil || r.Error.Code != 489 || !strings.Contains(r.Error.Message, "Bad Event") {
			t.Fatalf("pua.publish for bad: %+v %s, want error 489 Bad Event", r.Error, r.Result)
		}
		// Too few parameters.
		r = api.rpc("pua.publish", []any{"sip:dave@example.com", 600, "presence"})
		if r.Error == nil || r.Error.Code != -32602 {
			t.Fatalf("pua.publish with 3 params: %+v, want -32602", r.Error)
		}
		// pua.subscribe: presentity_uri, watcher_uri, event, expires.
		r = api.rpc("pua.subscribe", []any{erin, "sip:watcher@example.com", "presence", 300})
		if r.Error != nil {
			t.Fatalf("pua.subscribe: error %+v", r.Error)
		}
		var sres map[string]any
		if err := json.Unmarshal(r.Result, &sres); err != nil || sres["Status"] != float64(200) {
			t.Fatalf("pua.subscribe result %s", r.Result)
		}
		if subs := fake.subscribes("erin"); len(subs) != 1 || subs[0].Expires != "300" {
			t.Fatalf("SUBSCRIBE for erin on the wire: %+v", subs)
		}
		eventually(t, "erin's NOTIFY body listed", func() bool {
			l := api.subscriptions(url.Values{"presentity": {erin}})
			return l.Total == 1 && l.Items[0].LastNotifyBody == apiNotifyBody("erin")
		})
		// Unknown method.
		if r = api.rpc("pua.nosuch", []any{}); r.Error == nil || r.Error.Code != -32601 {
			t.Fatalf("unknown method: %+v", r.Error)
		}
	})

	t.Run("delete publication", func(t *testing.T) {
		api, anon := api.on(t), anon.on(t)
		_ = anon
		n := len(fake.publishes("alice"))
		q := url.Values{"presentity_uri": {"sip:alice@example.com"}, "event": {"presence"}}
		var res mgmt.SIPResult
		api.callJSON("DELETE", "/v1/publications?"+q.Encode(), nil, 200, &res)
		if res.Status != 200 {
			t.Fatalf("delete result %+v", res)
		}
		ps := fake.publishes("alice")
		if len(ps) != n+1 {
			t.Fatalf("fake saw %d PUBLISHes for alice, want %d", len(ps), n+1)
		}
		last := ps[len(ps)-1]
		cur := ps[len(ps)-2].ETag
		if last.Expires != "0" || last.IfMatch != cur || last.Body != "" {
			t.Fatalf("removal on the wire: %+v, want Expires 0, SIP-If-Match %q, no body", last, cur)
		}
		eventually(t, "alice's publication gone from the listing", func() bool {
			return api.publications(url.Values{"presentity": {"sip:alice@example.com"}}).Total == 0
		})
		// Deleting it again: nothing to remove.
		code, _, b := api.call("DELETE", "/v1/publications?"+q.Encode(), nil)
		if code != 404 {
			t.Errorf("second delete: HTTP %d, want 404: %s", code, b)
		}
		if len(fake.publishes("alice")) != n+1 {
			t.Errorf("a second delete sent a PUBLISH")
		}
		// Required parameters.
		code, _, b = api.call("DELETE", "/v1/publications?presentity_uri=sip:alice@example.com", nil)
		var e mgmt.ErrorBody
		if code != 400 || json.Unmarshal(b, &e) != nil || e.Field != "event" {
			t.Errorf("delete without event: HTTP %d %s, want 400 naming event", code, b)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		api, anon := api.on(t), anon.on(t)
		_ = anon
		after := api.scrape()
		for _, c := range []struct {
			status string
			min    float64
		}{
			{"200", 3}, // alice, dave, alice's removal
			{"489", 2}, // API and JSON-RPC
			{"timeout", 1},
		} {
			d := requests(after, c.status) - requests(before, c.status)
			if d < c.min {
				t.Errorf("puaside_sip_requests_total{PUBLISH,presence,%s} moved by %v, want >= %v", c.status, d, c.min)
			}
		}
		sub := apiCounter(after, "puaside_sip_requests_total", map[string]string{"method": "SUBSCRIBE", "status": "200"})
		if sub < 2 {
			t.Errorf("SUBSCRIBE 200 counted %v times, want >= 2", sub)
		}
		if n := apiCounter(after, "puaside_notify_received_total", map[string]string{"event": "presence", "status": "200"}); n < 2 {
			t.Errorf("puaside_notify_received_total{presence,200} = %v, want >= 2", n)
		}
		if _, ok := after["go_goroutines"]; !ok {
			t.Errorf("/metrics lacks the Go collector")
		}
	})
}

// TestAPIWaitShorterThanTransaction checks the documented status of a
// publish that gets no final reply when the wait ends before the SIP
// transaction does (wait_timeout shorter than request_timeout).
func TestAPIWaitShorterThanTransaction(t *testing.T) {
	fake := startAPIFakePS(t)
	cfg := baseConfig(t, nil)
	cfg.PUA.ServerAddress = fake.URI()
	cfg.PUA.RequestTimeout = 10 * time.Second
	cfg.HTTP.WaitTimeout = time.Second
	ps := startPuaside(t, cfg)
	api := newAPICaller(t, ps, "")
	code, _, b := api.call("POST", "/v1/publish", map[string]any{"presentity_uri": "sip:slow@example.com", "event": "presence", "body": apiPIDF("slow")})
	var e mgmt.ErrorBody
	if code != http.StatusGatewayTimeout || json.Unmarshal(b, &e) != nil || e.Error == "" {
		t.Fatalf("HTTP %d %s, want 504 with an Error", code, b)
	}
	r := api.rpc("pua.publish", []any{"sip:slow@example.com", 60, "presence", ".", "two", ".", ".", ".", apiPIDF("slow")})
	if r.Error == nil || r.Error.Code != 408 {
		t.Fatalf("pua.publish without answer: %+v, want error 408", r.Error)
	}
}

// TestAPIRefreshByETagSendsPUBLISH: Kamailio's pua.publish with an etag and
// no body (eight parameters) is a refresh, and openapi.yaml says of etag
// "with no body, refreshes": the presence server must see a PUBLISH with
// SIP-If-Match and the result must carry the new SIP-ETag. The same holds
// for POST /v1/publish with etag and no body.
func TestAPIRefreshByETagSendsPUBLISH(t *testing.T) {
	fake := startAPIFakePS(t)
	cfg := baseConfig(t, nil)
	cfg.PUA.ServerAddress = fake.URI()
	ps := startPuaside(t, cfg)
	api := newAPICaller(t, ps, "")

	r := api.rpc("pua.publish", []any{"sip:dave@example.com", 600, "presence", "application/pidf+xml", ".", ".", ".", ".", apiPIDF("dave")})
	if r.Error != nil {
		t.Fatalf("pua.publish: error %+v", r.Error)
	}
	first := fake.publishes("dave")
	if len(first) != 1 {
		t.Fatalf("fake saw %+v", first)
	}
	t.Run("jsonrpc", func(t *testing.T) {
		api := api.on(t)
		n := len(fake.publishes("dave"))
		etag := fake.publishes("dave")[n-1].ETag
		r := api.rpc("pua.publish", []any{"sip:dave@example.com", "600", "presence", ".", ".", etag, ".", "."})
		if r.Error != nil {
			t.Fatalf("pua.publish refresh: error %+v", r.Error)
		}
		ps := fake.publishes("dave")
		if len(ps) != n+1 || ps[n].IfMatch != etag || ps[n].Body != "" {
			t.Fatalf("refresh on the wire: %d PUBLISHes (%+v), want one more with SIP-If-Match %q and no body; result %s",
				len(ps)-n, ps[n:], etag, r.Result)
		}
		var got map[string]any
		if err := json.Unmarshal(r.Result, &got); err != nil || got["SIP-ETag"] != ps[n].ETag {
			t.Fatalf("refresh result %s, want SIP-ETag %q", r.Result, ps[n].ETag)
		}
	})
	t.Run("http", func(t *testing.T) {
		api := api.on(t)
		n := len(fake.publishes("dave"))
		etag := fake.publishes("dave")[n-1].ETag
		var res mgmt.SIPResult
		api.callJSON("POST", "/v1/publish", map[string]any{"presentity_uri": "sip:dave@example.com", "event": "presence",
			"expires": 600, "etag": etag}, 200, &res)
		ps := fake.publishes("dave")
		if len(ps) != n+1 || ps[n].IfMatch != etag {
			t.Fatalf("refresh on the wire: %d PUBLISHes, want one more with SIP-If-Match %q; result %+v", len(ps)-n, etag, res)
		}
		if res.ETag != ps[n].ETag {
			t.Fatalf("result %+v, want etag %q", res, ps[n].ETag)
		}
	})
}
