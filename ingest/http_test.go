package ingest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/event"
	"github.com/puaside/puaside/metrics"
)

func postEvents(t *testing.T, in *Ingest, remote, body string) (int, map[string]any) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/v1/events", strings.NewReader(body))
	r.RemoteAddr = remote
	w := httptest.NewRecorder()
	in.EventsHandler().ServeHTTP(w, r)
	var out map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatalf("reply is not JSON: %q", w.Body.String())
	}
	return w.Code, out
}

func TestEventsAccepted(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	yes := true
	tests := []struct {
		name     string
		body     string
		accepted float64
		regs     []event.Registration
		dlgs     []event.DialogState
	}{
		{
			name:     "native registration",
			body:     `{"type":"registration","aor":"sip:alice@example.com","contacts":[{"uri":"sip:alice@1.2.3.4:5060","expires":3600,"q":0.5,"callid":"c1"}],"complete":true,"publish":true}`,
			accepted: 1,
			regs: []event.Registration{{AoR: "sip:alice@example.com", Complete: true, Publish: &yes, Source: event.SourceJSON, Time: now,
				Contacts: []event.Contact{{URI: "sip:alice@1.2.3.4:5060", Expires: 3600, Q: 0.5, CallID: "c1"}}}},
		},
		{
			name:     "array with remove_all and a dialog",
			body:     `[{"type":"registration","aor":"bob","remove_all":true},{"type":"dialog","call_id":"x","from_tag":"f","to_tag":"t","from":"sip:a@b","to":"sip:c@d","state":"early","code":180,"time":"2026-01-02T03:04:05Z"}]`,
			accepted: 2,
			regs:     []event.Registration{{AoR: "bob", RemoveAll: true, Source: event.SourceJSON, Time: now}},
			dlgs: []event.DialogState{{CallID: "x", FromTag: "f", ToTag: "t", From: "sip:a@b", To: "sip:c@d", State: "early", Code: 180,
				Source: event.SourceJSON, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}},
		},
		{
			name: "OpenSIPS event_route shape, absolute expiry",
			body: `{"event":"E_UL_CONTACT_INSERT","params":{"domain":"location","aor":"alice","uri":"sip:alice@10.0.0.1:5060","received":"","path":null,"qval":500,"user_agent":"phone 1.0","socket":"udp:1.1.1.1:5060","bflags":0,"expires":` +
				jsonInt(now.Unix()+600) + `,"callid":"abc","cseq":7,"attr":"","latency":0,"shtag":""}}`,
			accepted: 1,
			regs: []event.Registration{{AoR: "alice", Source: event.SourceJSON, Time: now,
				Contacts: []event.Contact{{URI: "sip:alice@10.0.0.1:5060", Expires: 600, Q: 0.5, CallID: "abc", CSeq: 7, UserAgent: "phone 1.0"}}}},
		},
		{
			name:     "OpenSIPS JSON-RPC notification, delete, unset qval",
			body:     `{"jsonrpc":"2.0","method":"E_UL_CONTACT_DELETE","params":{"domain":"location","aor":"test@192.168.20.21","uri":"sip:40936782@192.168.10.179:57028","received":"sip:192.168.10.179:57028","path":null,"qval":-1,"expires":1695054721,"callid":"J76","cseq":"1"}}`,
			accepted: 1,
			regs: []event.Registration{{AoR: "test@192.168.20.21", Source: event.SourceJSON, Time: now,
				Contacts: []event.Contact{{URI: "sip:40936782@192.168.10.179:57028", Expires: 0, Q: -1, CallID: "J76", CSeq: 1, Received: "sip:192.168.10.179:57028"}}}},
		},
		{
			name:     "OpenSIPS update with qval printed unsigned",
			body:     `{"event":"E_UL_CONTACT_UPDATE","params":{"aor":"a","uri":"sip:a@h","qval":18446744073709551615,"expires":0}}`,
			accepted: 1,
			regs: []event.Registration{{AoR: "a", Source: event.SourceJSON, Time: now,
				Contacts: []event.Contact{{URI: "sip:a@h", Expires: -1, Q: -1}}}},
		},
		{
			name:     "OpenSIPS dialog states",
			body:     `[{"event":"E_DLG_STATE_CHANGED","params":{"id":"1a2b","db_id":123,"callid":"c","from_tag":"f","to_tag":"","old_state":1,"new_state":2}},{"jsonrpc":"2.0","method":"E_DLG_STATE_CHANGED","params":{"callid":"c","from_tag":"f","to_tag":"t","old_state":2,"new_state":3}},{"event":"E_DLG_STATE_CHANGED","params":{"callid":"c","from_tag":"f","to_tag":"t","old_state":4,"new_state":"5"}}]`,
			accepted: 3,
			dlgs: []event.DialogState{
				{CallID: "c", FromTag: "f", State: "early", Source: event.SourceJSON, Time: now},
				{CallID: "c", FromTag: "f", ToTag: "t", State: "confirmed", Source: event.SourceJSON, Time: now},
				{CallID: "c", FromTag: "f", ToTag: "t", State: "terminated", Source: event.SourceJSON, Time: now},
			},
		},
		{
			name: "AoR insert is ignored",
			body: `{"event":"E_UL_AOR_INSERT","params":{"domain":"location","aor":"a"}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder()
			in := start(t, testConfig(), rec.handlers(), nil, clk)
			code, out := postEvents(t, in, "127.0.0.1:4000", tt.body)
			if code != http.StatusAccepted {
				t.Fatalf("code %d: %v", code, out)
			}
			check(t, "accepted", out["accepted"].(float64), tt.accepted)
			rec.wait(t, len(tt.regs)+len(tt.dlgs))
			in.Stop()
			check(t, "registrations", len(rec.regs), len(tt.regs))
			check(t, "dialogs", len(rec.dlgs), len(tt.dlgs))
			for i := range tt.regs {
				g, w := rec.regs[i], tt.regs[i]
				gj, _ := json.Marshal(g)
				wj, _ := json.Marshal(w)
				check(t, "registration", string(gj), string(wj))
			}
			for i := range tt.dlgs {
				check(t, "dialog", rec.dlgs[i], tt.dlgs[i])
			}
		})
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestEventsRejected(t *testing.T) {
	tests := []struct {
		name, remote, body string
		code               int
		field              string
	}{
		{"unknown type", "127.0.0.1:1", `{"type":"presence"}`, 400, "type"},
		{"unknown OpenSIPS event", "127.0.0.1:1", `{"event":"E_PIKE_BLOCKED","params":{}}`, 400, "event"},
		{"unknown JSON-RPC method", "127.0.0.1:1", `{"jsonrpc":"2.0","method":"E_FOO"}`, 400, "method"},
		{"no type", "127.0.0.1:1", `{"aor":"x"}`, 400, ""},
		{"type not a string", "127.0.0.1:1", `{"type":7}`, 400, "type"},
		{"wrong type expires", "127.0.0.1:1", `{"type":"registration","aor":"a","contacts":[{"uri":"sip:a@b","expires":"soon"}]}`, 400, "contacts.expires"},
		{"wrong type in array", "127.0.0.1:1", `[{"type":"dialog","call_id":"c","state":"early"},{"type":"dialog","call_id":"c","state":"early","code":"180"}]`, 400, "[1].code"},
		{"unknown field", "127.0.0.1:1", `{"type":"dialog","call_id":"c","state":"early","colour":"red"}`, 400, "colour"},
		{"bad state", "127.0.0.1:1", `{"type":"dialog","call_id":"c","state":"ringing"}`, 400, "state"},
		{"missing aor", "127.0.0.1:1", `{"type":"registration","contacts":[{"uri":"sip:a@b"}]}`, 400, "aor"},
		{"missing contact uri", "127.0.0.1:1", `{"type":"registration","aor":"a","contacts":[{"expires":5}]}`, 400, "contacts[0].uri"},
		{"q out of range", "127.0.0.1:1", `{"type":"registration","aor":"a","contacts":[{"uri":"sip:a@b","q":2}]}`, 400, "contacts[0].q"},
		{"OpenSIPS expires object", "127.0.0.1:1", `{"event":"E_UL_CONTACT_INSERT","params":{"aor":"a","uri":"u","expires":{}}}`, 400, "params.expires"},
		{"OpenSIPS bad new_state", "127.0.0.1:1", `{"event":"E_DLG_STATE_CHANGED","params":{"callid":"c","new_state":9}}`, 400, "params.new_state"},
		{"OpenSIPS no callid", "127.0.0.1:1", `{"event":"E_DLG_STATE_CHANGED","params":{"hash_entry":1,"new_state":4}}`, 400, "params.callid"},
		{"not an object", "127.0.0.1:1", `[1]`, 400, "[0]"},
		{"malformed", "127.0.0.1:1", `{"type":`, 400, ""},
		{"empty", "127.0.0.1:1", ``, 400, ""},
		{"untrusted", "192.0.2.1:1", `{"type":"dialog","call_id":"c","state":"early"}`, 403, ""},
		{"oversize", "127.0.0.1:1", `[` + strings.Repeat(`{"type":"dialog","call_id":"c","state":"early"},`, 30000) + `{}]`, 413, ""},
	}
	m := metrics.New()
	rec := newRecorder()
	in := start(t, testConfig(), rec.handlers(), m, newClock())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := postEvents(t, in, tt.remote, tt.body)
			if code != tt.code {
				t.Fatalf("code %d, want %d: %v", code, tt.code, out)
			}
			if out["error"] == nil || out["error"] == "" {
				t.Fatalf("no error message: %v", out)
			}
			if tt.field != "" && out["field"] != tt.field {
				t.Fatalf("field %v, want %q (%v)", out["field"], tt.field, out)
			}
		})
	}
	in.Stop()
	check(t, "nothing delivered", len(rec.regs)+len(rec.dlgs), 0)
	check(t, "untrusted counted", counter(t, m, "puaside_ingest_dropped_total", map[string]string{"input": "json", "reason": "untrusted"}), 1)
}

func TestEventsMethodAndStopped(t *testing.T) {
	in := start(t, testConfig(), newRecorder().handlers(), nil, newClock())
	r := httptest.NewRequest(http.MethodGet, "/v1/events", nil)
	r.RemoteAddr = "127.0.0.1:1"
	w := httptest.NewRecorder()
	in.EventsHandler().ServeHTTP(w, r)
	check(t, "GET", w.Code, http.StatusMethodNotAllowed)
	in.Stop()
	code, _ := postEvents(t, in, "127.0.0.1:1", `{"type":"dialog","call_id":"c","state":"early"}`)
	check(t, "after stop", code, http.StatusServiceUnavailable)
}
