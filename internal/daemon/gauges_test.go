package daemon

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/bla"
)

// scrape reads /metrics into series (name{labels} as printed) → value.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	code, body := call(t, "GET", base+"/metrics", "")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	out := map[string]float64{}
	for _, l := range strings.Split(body, "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", l, err)
		}
		out[l[:i]] = v
	}
	return out
}

// waitGauges waits until every gauge of want has its value.
func waitGauges(t *testing.T, base, what string, want map[string]float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := scrape(t, base)
		var wrong []string
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				wrong = append(wrong, fmt.Sprintf("%s = %v (present %v), want %v", k, g, ok, v))
			}
		}
		if len(wrong) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s:\n%s", what, strings.Join(wrong, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func postEvents(t *testing.T, base, body string) {
	t.Helper()
	if code, out := call(t, "POST", base+"/v1/events", body); code != 202 {
		t.Fatalf("POST /v1/events: %d %s", code, out)
	}
}

// TestTrackerGauges: the gauges of the trackers' sizes follow a
// registration (two contacts) and a call (one dialog) from their start at
// 0 back to 0, and the configured shared line is counted from the start.
func TestTrackerGauges(t *testing.T) {
	cfg := testConfig(t)
	cfg.BLA.Lines = []bla.LineConfig{{AoR: "sip:line1@example.com"}}
	base := startDaemon(t, cfg)
	waitGauges(t, base, "at start", map[string]float64{
		"puaside_registrations": 0, "puaside_contacts": 0, "puaside_active_dialogs": 0, "puaside_lines": 1,
	})

	postEvents(t, base, `{"type":"registration","aor":"sip:alice@example.com","complete":true,
		"contacts":[{"uri":"sip:alice@192.0.2.1:5060","expires":600,"callid":"r1"},{"uri":"sip:alice@192.0.2.2:5060","expires":600,"callid":"r2"}]}`)
	waitGauges(t, base, "after a registration of two contacts", map[string]float64{
		"puaside_registrations": 1, "puaside_contacts": 2, "puaside_active_dialogs": 0, "puaside_lines": 1,
	})

	call := func(state string) string {
		return `{"type":"dialog","call_id":"c1","from_tag":"f1","to_tag":"t1","from":"sip:alice@example.com","to":"sip:bob@example.com","state":"` + state + `"}`
	}
	postEvents(t, base, call("confirmed"))
	waitGauges(t, base, "during a call", map[string]float64{
		"puaside_registrations": 1, "puaside_contacts": 2, "puaside_active_dialogs": 1,
	})
	postEvents(t, base, call("terminated"))
	postEvents(t, base, `{"type":"registration","aor":"sip:alice@example.com","remove_all":true}`)
	waitGauges(t, base, "after the call and the unregistration", map[string]float64{
		"puaside_registrations": 0, "puaside_contacts": 0, "puaside_active_dialogs": 0, "puaside_lines": 1,
	})
}

// TestPACountersAtZero: with the presence server in process (the default),
// its counters exist at 0 before it has seen anything, so that rate() and
// absence alerts work from the first scrape.
func TestPACountersAtZero(t *testing.T) {
	cfg := testConfig(t)
	cfg.PUA.ServerAddress = ""
	cfg.PA.Listen = []string{"udp:127.0.0.1:0"}
	base := startDaemon(t, cfg)
	want := map[string]float64{}
	for _, ev := range []string{"presence", "dialog", "dialog;sla"} {
		want[`puaside_pa_subscribes_total{event="`+ev+`",status="200"}`] = 0
		want[`puaside_pa_notifies_total{event="`+ev+`",status="200"}`] = 0
		want[`puaside_pa_notifies_total{event="`+ev+`",status="timeout"}`] = 0
		want[`puaside_pa_subscriptions_ended_total{event="`+ev+`"}`] = 0
	}
	for _, src := range []string{"sip", "inprocess"} {
		want[`puaside_pa_publications_total{source="`+src+`",status="ok"}`] = 0
	}
	want["puaside_pa_store_errors_total"] = 0
	want["puaside_pa_gateway_errors_total"] = 0
	want[`puaside_pa_websocket_dropped_total{reason="frame_too_large"}`] = 0
	waitGauges(t, base, "pa's counters at start", want)

	// One label name per concept: a SIP reply status is "status" in
	// every series (histogram buckets' "le" aside).
	label := regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)
	statusCode := regexp.MustCompile(`^[1-6][0-9][0-9]$`)
	for series := range scrape(t, base) {
		for _, m := range label.FindAllStringSubmatch(series, -1) {
			if m[1] != "status" && m[1] != "le" && statusCode.MatchString(m[2]) {
				t.Errorf("%s: a SIP status in label %q, want \"status\"", series, m[1])
			}
		}
	}
}
