package ingest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/metrics"
)

// boundedInvite is an INVITE copy; edit changes one of its lines.
func boundedInvite(i int, edit func(lines []string)) []byte {
	lines := []string{
		"INVITE sip:bob@example.com SIP/2.0",
		fmt.Sprintf("Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKbound%d", i),
		"From: <sip:alice@example.com>;tag=ft" + fmt.Sprint(i),
		"To: <sip:bob@example.com>",
		fmt.Sprintf("Call-ID: bound-%d@example.com", i),
		"CSeq: 1 INVITE",
		"Contact: <sip:alice@10.0.0.1:5060>",
		"User-Agent: phone",
		"Content-Length: 0",
	}
	if edit != nil {
		edit(lines)
	}
	return []byte(strings.Join(lines, "\r\n") + "\r\n\r\n")
}

// TestBoundsDropOverlong: copies with a Request-URI, From, To or Contact
// URI, Call-ID, tag or header line over its bound are dropped, counted
// with their reason and still answered; copies within the bounds are
// delivered.
func TestBoundsDropOverlong(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	cases := []struct {
		name, reason string
		edit         func([]string)
	}{
		{"request-uri", reasonURITooLong, func(l []string) { l[0] = "INVITE sip:" + long(600) + "@example.com SIP/2.0" }},
		{"from uri", reasonURITooLong, func(l []string) { l[2] = "From: <sip:" + long(600) + "@example.com>;tag=ft" }},
		{"to uri", reasonURITooLong, func(l []string) { l[3] = "To: <sip:bob@example.com;x=" + long(600) + ">" }},
		{"contact uri", reasonURITooLong, func(l []string) { l[6] = "Contact: <sip:alice@10.0.0.1:5060;pn-prid=" + long(600) + ">" }},
		{"call-id", reasonCallIDTooLong, func(l []string) { l[4] = "Call-ID: " + long(300) }},
		{"from tag", reasonTagTooLong, func(l []string) { l[2] = "From: <sip:alice@example.com>;tag=" + long(200) }},
		{"to tag", reasonTagTooLong, func(l []string) { l[3] = "To: <sip:bob@example.com>;tag=" + long(200) }},
		{"header", reasonHeaderTooLong, func(l []string) { l[7] = "User-Agent: " + long(5000) }},
		{"folded header", reasonHeaderTooLong, func(l []string) { l[7] = "User-Agent: a\r\n " + long(3000) + "\r\n\t" + long(3000) }},
	}
	rec := newRecorder()
	cfg := testConfig()
	cfg.ReplicateListen = []string{"udp:127.0.0.1:0"}
	m := metrics.New()
	in := start(t, cfg, rec.handlers(), m, newClock())
	c := udpClient(t, addr(t, in, InputReplicate, "udp"))
	buf := make([]byte, 65536)
	send := func(raw []byte) {
		t.Helper()
		if _, err := c.Write(raw); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(buf); err != nil {
			t.Fatalf("no reply: %v", err)
		}
	}
	want := map[string]float64{}
	for i, tc := range cases {
		send(boundedInvite(i, tc.edit))
		want[tc.reason]++
	}
	// Within the bounds: a 300-character From user and a long Contact.
	send(boundedInvite(100, func(l []string) { l[2] = "From: <sip:" + long(300) + "@example.com>;tag=" + long(128) }))
	send(boundedInvite(101, func(l []string) { l[6] = "Contact: <sip:alice@10.0.0.1:5060;pn-prid=" + long(400) + ">" }))
	rec.wait(t, 2)
	in.Stop()
	if len(rec.sips) != 2 {
		t.Fatalf("delivered %d copies, want the 2 within bounds", len(rec.sips))
	}
	for reason, n := range want {
		if got := counter(t, m, "puaside_ingest_dropped_total", map[string]string{"input": "replicate", "reason": reason}); got != n {
			t.Errorf("dropped %s = %v, want %v", reason, got, n)
		}
	}
}

// TestBoundsHEPAndDisabled: a HEP copy over a bound is dropped; with the
// bounds set to 0 the same copy is delivered.
func TestBoundsHEPAndDisabled(t *testing.T) {
	raw := boundedInvite(1, func(l []string) { l[4] = "Call-ID: " + strings.Repeat("c", 300) })
	m := metrics.New()
	rec := newRecorder()
	in := start(t, testConfig(), rec.handlers(), m, newClock())
	in.handleHEP(mustAddrPort("127.0.0.1:9"), (&hepBuilder{}).chunk(0, 0x0b, []byte{HEPProtoSIP}).chunk(0, 0x0f, raw).bytes(), false)
	if got := counter(t, m, "puaside_ingest_dropped_total", map[string]string{"input": "hep", "reason": reasonCallIDTooLong}); got != 1 {
		t.Errorf("hep dropped %v, want 1", got)
	}
	cfg := testConfig()
	cfg.MaxURILength, cfg.MaxCallIDLength, cfg.MaxTagLength, cfg.MaxHeaderLength = 0, 0, 0, 0
	rec2 := newRecorder()
	in2 := start(t, cfg, rec2.handlers(), nil, newClock())
	in2.handleHEP(mustAddrPort("127.0.0.1:9"), (&hepBuilder{}).chunk(0, 0x0b, []byte{HEPProtoSIP}).chunk(0, 0x0f, raw).bytes(), false)
	rec2.wait(t, 1)
}

// TestBoundsJSON: a JSON event with a value over its bound is refused with
// 400 and counted with the reason.
func TestBoundsJSON(t *testing.T) {
	m := metrics.New()
	in := start(t, testConfig(), newRecorder().handlers(), m, newClock())
	for _, tc := range []struct{ body, reason string }{
		{`{"type":"registration","aor":"sip:a@b","contacts":[{"uri":"sip:a@1.2.3.4","user_agent":"` + strings.Repeat("u", 5000) + `"}]}`, reasonHeaderTooLong},
		{`{"type":"registration","aor":"sip:` + strings.Repeat("a", 600) + `@b","remove_all":true}`, reasonURITooLong},
		{`{"type":"dialog","call_id":"` + strings.Repeat("c", 300) + `","from_tag":"f","from":"sip:a@b","to":"sip:c@d","state":"early"}`, reasonCallIDTooLong},
		{`{"type":"dialog","call_id":"c","from_tag":"` + strings.Repeat("f", 200) + `","from":"sip:a@b","to":"sip:c@d","state":"early"}`, reasonTagTooLong},
	} {
		code, out := postEvents(t, in, "127.0.0.1:4000", tc.body)
		if code != http.StatusBadRequest || !strings.Contains(fmt.Sprint(out["error"]), "more than") {
			t.Errorf("%s: %d %v, want 400 naming the bound", tc.reason, code, out)
		}
		if got := counter(t, m, "puaside_ingest_dropped_total", map[string]string{"input": "json", "reason": tc.reason}); got != 1 {
			t.Errorf("json dropped %s = %v, want 1", tc.reason, got)
		}
	}
}

func TestCheckHeaderLines(t *testing.T) {
	cfg := Config{MaxHeaderLength: 20}
	for _, tc := range []struct {
		raw  string
		want bool // over
	}{
		{"INVITE sip:" + strings.Repeat("x", 50) + " SIP/2.0\r\nA: short\r\n\r\n", false},
		{"INVITE sip:x SIP/2.0\r\nA: " + strings.Repeat("y", 30) + "\r\n\r\n", true},
		{"INVITE sip:x SIP/2.0\nA: 1234567890\n 1234567890\n\n", true},
		{"INVITE sip:x SIP/2.0\r\nA: 12345\r\n\r\n" + strings.Repeat("body", 20), false},
		{"INVITE sip:x SIP/2.0\r\nA: 12345\r\nB: " + strings.Repeat("z", 25), true},
	} {
		if got := cfg.checkHeaderLines([]byte(tc.raw)) != nil; got != tc.want {
			t.Errorf("checkHeaderLines(%q) over = %v, want %v", tc.raw, got, tc.want)
		}
	}
}
