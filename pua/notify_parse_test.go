package pua

import (
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func parseRaw(t *testing.T, raw string) *sip.Request {
	t.Helper()
	m, err := sip.ParseMessage([]byte(strings.ReplaceAll(raw, "\n", "\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	return m.(*sip.Request)
}

// TestParseNotify: the parse step reads every field the state step uses
// from the message alone.
func TestParseNotify(t *testing.T) {
	body := `<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="3" state="full" entity="sip:100@example.com"/>`
	req := parseRaw(t, `NOTIFY sip:puaside@127.0.0.1:5070 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-1
Max-Forwards: 70
From: <sip:100@example.com>;tag=remote
To: <sip:100@example.com>;tag=local
Call-ID: cid-1
CSeq: 7 NOTIFY
Contact: <sip:100@127.0.0.1:5060>
Record-Route: <sip:127.0.0.1:5060;lr>
Record-Route: <sip:10.0.0.1;lr>
Event: Dialog;sla
Subscription-State: active;expires=600
Content-Type: application/dialog-info+xml
Content-Length: `+strconv.Itoa(len(body))+`

`+body)
	m := parseNotify(req)
	if m.event != "dialog;sla" || m.callID != "cid-1" || m.toTag != "local" || m.fromTag != "remote" || m.cseq != 7 {
		t.Errorf("dialog fields %q %q %q %q %d", m.event, m.callID, m.toTag, m.fromTag, m.cseq)
	}
	if m.subStateErr != nil || m.subState.State != "active" || m.subState.Expires != 600 {
		t.Errorf("subscription-state %+v %v", m.subState, m.subStateErr)
	}
	if !m.hasContact || m.contact != "sip:100@127.0.0.1:5060" || m.from != "sip:100@example.com" || m.to != "sip:100@example.com" {
		t.Errorf("addresses %q %q %q", m.contact, m.from, m.to)
	}
	if want := []string{"<sip:127.0.0.1:5060;lr>", "<sip:10.0.0.1;lr>"}; !reflect.DeepEqual(m.routes, want) {
		t.Errorf("routes %q, want %q", m.routes, want)
	}
	if m.contentType != "application/dialog-info+xml" || string(m.body) != body {
		t.Errorf("body %q %q", m.contentType, m.body)
	}
	if got := m.header("subscription-state"); got != "active;expires=600" {
		t.Errorf("header lookup %q", got)
	}
	// The body is a copy: the state step keeps it after sipgo reuses the
	// message.
	req.Body()[0] = 'X'
	if m.body[0] != '<' {
		t.Error("body shares the request's buffer")
	}
}

func TestParseNotifyBadSubscriptionState(t *testing.T) {
	req := parseRaw(t, `NOTIFY sip:puaside@127.0.0.1:5070 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-2
From: <sip:100@example.com>;tag=remote
To: <sip:100@example.com>;tag=local
Call-ID: cid-2
CSeq: 1 NOTIFY
Event: presence
Content-Length: 0

`)
	m := parseNotify(req)
	if m.subStateErr == nil {
		t.Fatal("missing Subscription-State accepted")
	}
	if m.hasContact || m.routes != nil || len(m.body) != 0 {
		t.Errorf("fields of a bare NOTIFY: %+v", m)
	}
}
