package mgmt_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/mgmt"
	"github.com/puaside/puaside/pua"
)

func TestJSONRPCKamailioCompat(t *testing.T) {
	const pidf = `<presence/>`
	tests := []struct {
		name      string
		req       string
		reply     func(pua.PublishRequest) pua.Result
		wantRes   string // JSON of result, when success
		wantCode  int    // error code, when failure
		wantMsg   string // substring of the error message
		check     func(t *testing.T, got []pua.PublicationInfo, subs []pua.SubscriptionInfo)
		noContent bool
	}{
		{
			name:    "pua.publish positional with dots, no body param? body given",
			req:     `{"jsonrpc":"2.0","id":1,"method":"pua.publish","params":["sip:alice@example.com",3600,"presence","application/pidf+xml",".",".",".","Sender: sip:p@10.0.0.2\r\nX-A: b\r\n","` + pidf + `"]}`,
			wantRes: `{"Expires":3600,"SIP-ETag":"etag-1"}`,
			check: func(t *testing.T, got []pua.PublicationInfo, _ []pua.SubscriptionInfo) {
				if len(got) != 1 || got[0].Key != (pua.Key{PresURI: "sip:alice@example.com", Event: "presence"}) ||
					string(got[0].Body) != pidf || got[0].ContentType != "application/pidf+xml" || got[0].Flag != pua.FlagRPCPublish ||
					len(got[0].ExtraHeaders) != 2 || got[0].ExtraHeaders[0] != (pua.Header{Name: "Sender", Value: "sip:p@10.0.0.2"}) {
					t.Errorf("publication %+v", got)
				}
			},
		},
		{
			name:    "expires as string, content type and id set",
			req:     `{"jsonrpc":"2.0","id":"a","method":"pua.publish","params":["sip:alice@example.com","60","dialog",".","line1",".",".",".","<d/>"]}`,
			wantRes: `{"Expires":60,"SIP-ETag":"etag-1"}`,
			check: func(t *testing.T, got []pua.PublicationInfo, _ []pua.SubscriptionInfo) {
				if len(got) != 1 || got[0].Key.ID != "line1" || got[0].ContentType != "application/dialog-info+xml" {
					t.Errorf("publication %+v", got)
				}
			},
		},
		{
			name:    "named params",
			req:     `{"jsonrpc":"2.0","id":2,"method":"pua.publish","params":{"presentity_uri":"sip:a@example.com","expires":10,"event":"presence","body":"<p/>"}}`,
			wantRes: `{"Expires":10,"SIP-ETag":"etag-1"}`,
		},
		{
			name:     "SIP failure keeps the SIP status",
			req:      `{"jsonrpc":"2.0","id":3,"method":"pua.publish","params":["sip:a@example.com",3600,"presence",".",".",".",".",".","<p/>"]}`,
			reply:    func(pua.PublishRequest) pua.Result { return pua.Result{Status: 489, Reason: "Bad Event"} },
			wantCode: 489, wantMsg: "Bad Event",
		},
		{
			name:     "seven params is one too few",
			req:      `{"jsonrpc":"2.0","id":4,"method":"pua.publish","params":["sip:a@example.com",3600,"presence",".",".",".","."]}`,
			wantCode: -32602, wantMsg: "extra_headers",
		},
		{
			name:     "ten params is too many",
			req:      `{"jsonrpc":"2.0","id":4,"method":"pua.publish","params":["sip:a@example.com",3600,"presence",".",".",".",".",".","b","x"]}`,
			wantCode: -32602, wantMsg: "at most 9",
		},
		{
			name:     "expires not a number",
			req:      `{"jsonrpc":"2.0","id":5,"method":"pua.publish","params":["sip:a@example.com","soon","presence",".",".",".",".",".","b"]}`,
			wantCode: -32602, wantMsg: "expires",
		},
		{
			name:     "unknown event",
			req:      `{"jsonrpc":"2.0","id":6,"method":"pua.publish","params":["sip:a@example.com",60,"nosuch",".",".",".",".",".","b"]}`,
			wantCode: -32602, wantMsg: "event",
		},
		{
			name:     "bad uri",
			req:      `{"jsonrpc":"2.0","id":6,"method":"pua.publish","params":["alice",60,"presence",".",".",".",".",".","b"]}`,
			wantCode: -32602, wantMsg: "presentity_uri",
		},
		{
			name:     "wrong etag is Kamailio's fault 500",
			req:      `{"jsonrpc":"2.0","id":7,"method":"pua.publish","params":["sip:a@example.com",60,"presence",".",".","nope",".","."]}`,
			wantCode: 500, wantMsg: "Wrong ETag",
		},
		{
			name:     "param of wrong type",
			req:      `{"jsonrpc":"2.0","id":8,"method":"pua.publish","params":[["sip:a@example.com"],60,"presence",".",".",".",".","."]}`,
			wantCode: -32602, wantMsg: "presentity_uri",
		},
		{
			name:     "unknown named param",
			req:      `{"jsonrpc":"2.0","id":8,"method":"pua.publish","params":{"presentity_uri":"sip:a@x","expires":1,"event":"presence","bogus":1}}`,
			wantCode: -32602, wantMsg: "bogus",
		},
		{
			name:    "send_publish does not wait",
			req:     `{"jsonrpc":"2.0","id":9,"method":"pua.send_publish","params":["sip:a@example.com",60,"presence",".",".",".",".",".","<p/>"]}`,
			wantRes: `null`,
			check: func(t *testing.T, got []pua.PublicationInfo, _ []pua.SubscriptionInfo) {
				if len(got) != 1 || got[0].State != pua.StatePending {
					t.Errorf("publication %+v", got)
				}
			},
		},
		{
			name:    "pua.subscribe positional",
			req:     `{"jsonrpc":"2.0","id":10,"method":"pua.subscribe","params":["sip:bob@example.com","sip:mon@example.com","presence",3600]}`,
			wantRes: `{"Expires":3600,"Reason":"Accepted","Status":202}`,
			check: func(t *testing.T, _ []pua.PublicationInfo, subs []pua.SubscriptionInfo) {
				want := pua.SubKey{PresURI: "sip:bob@example.com", WatcherURI: "sip:mon@example.com", Event: "presence"}
				if len(subs) != 1 || subs[0].Key != want || subs[0].Flag != pua.FlagRPCSubscribe {
					t.Errorf("subscriptions %+v", subs)
				}
			},
		},
		{
			name:     "pua.subscribe three params",
			req:      `{"jsonrpc":"2.0","id":11,"method":"pua.subscribe","params":["sip:bob@example.com","sip:mon@example.com","presence"]}`,
			wantCode: -32602, wantMsg: "expires",
		},
		{name: "parse error", req: `{"jsonrpc":"2.0",`, wantCode: -32700},
		{name: "not an object", req: `42`, wantCode: -32600},
		{name: "method missing", req: `{"jsonrpc":"2.0","id":1}`, wantCode: -32600},
		{name: "method not a string", req: `{"jsonrpc":"2.0","id":1,"method":7}`, wantCode: -32600},
		{name: "wrong version", req: `{"jsonrpc":"1.0","id":1,"method":"pua.publish"}`, wantCode: -32600},
		{name: "bad id", req: `{"jsonrpc":"2.0","id":{},"method":"pua.publish"}`, wantCode: -32600},
		{name: "unknown method", req: `{"jsonrpc":"2.0","id":1,"method":"ul.dump"}`, wantCode: -32601},
		{name: "params not array or object", req: `{"jsonrpc":"2.0","id":1,"method":"pua.subscribe","params":"x"}`, wantCode: -32602},
		{name: "empty batch", req: `[]`, wantCode: -32600},
		{name: "notification", req: `{"jsonrpc":"2.0","method":"pua.send_publish","params":["sip:a@example.com",60,"presence",".",".",".",".",".","<p/>"]}`, noContent: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.eng.PublishReply = tc.reply
			a := do(t, "POST", f.base+"/RPC", tc.req, nil)
			if tc.noContent {
				if a.code != 204 || a.raw != "" {
					t.Fatalf("notification answered: %d %s", a.code, a.raw)
				}
				return
			}
			if a.code != 200 {
				t.Fatalf("HTTP %d: %s", a.code, a.raw)
			}
			var resp struct {
				JSONRPC string           `json:"jsonrpc"`
				Result  *json.RawMessage `json:"result"`
				Error   *struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
				ID json.RawMessage `json:"id"`
			}
			if err := json.Unmarshal([]byte(a.raw), &resp); err != nil || resp.JSONRPC != "2.0" || resp.ID == nil {
				t.Fatalf("not a JSON-RPC response: %s", a.raw)
			}
			if tc.wantCode != 0 {
				if resp.Error == nil || resp.Error.Code != tc.wantCode || !strings.Contains(resp.Error.Message, tc.wantMsg) {
					t.Fatalf("want error %d %q, got %s", tc.wantCode, tc.wantMsg, a.raw)
				}
				if resp.Result != nil {
					t.Errorf("result and error both set: %s", a.raw)
				}
				return
			}
			if tc.wantRes == "null" {
				if resp.Error != nil || !strings.Contains(a.raw, `"result":null`) {
					t.Fatalf("want null result, got %s", a.raw)
				}
			} else if resp.Error != nil || resp.Result == nil || string(*resp.Result) != tc.wantRes {
				t.Fatalf("want result %s, got %s", tc.wantRes, a.raw)
			}
			if tc.check != nil {
				tc.check(t, f.eng.Publications(), f.eng.Subscriptions())
			}
		})
	}
}

func TestJSONRPCBatchAndTimeout(t *testing.T) {
	f := newFixture(t, nil)
	a := do(t, "POST", f.base+"/RPC", `[
		{"jsonrpc":"2.0","id":1,"method":"pua.publish","params":["sip:a@example.com",60,"presence",".",".",".",".",".","<p/>"]},
		{"jsonrpc":"2.0","method":"pua.send_publish","params":["sip:b@example.com",60,"presence",".",".",".",".",".","<p/>"]},
		{"jsonrpc":"2.0","id":2,"method":"nosuch"},
		17
	]`, nil)
	var resps []map[string]any
	if err := json.Unmarshal([]byte(a.raw), &resps); err != nil || len(resps) != 3 {
		t.Fatalf("batch answer: %d %s", a.code, a.raw)
	}
	if resps[0]["result"] == nil || num(resps[1]["error"].(map[string]any)["code"]) != -32601 ||
		num(resps[2]["error"].(map[string]any)["code"]) != -32600 {
		t.Errorf("batch answer %s", a.raw)
	}
	if n := len(f.eng.Publications()); n != 2 {
		t.Errorf("publications %d, want 2", n)
	}

	g := newFixture(t, func(c *mgmt.Config) { c.WaitTimeout = 50 * time.Millisecond })
	g.eng.Block = true
	a = do(t, "POST", g.base+"/RPC", `{"jsonrpc":"2.0","id":1,"method":"pua.publish","params":["sip:a@example.com",60,"presence",".",".",".",".",".","<p/>"]}`, nil)
	if !strings.Contains(a.raw, `"code":408`) {
		t.Errorf("timeout answer: %s", a.raw)
	}
}
