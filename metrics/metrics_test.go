package metrics

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// BenchmarkRequest measures the count of one finished transaction (one a
// PUBLISH or SUBSCRIBE reply).
func BenchmarkRequest(b *testing.B) {
	m := New()
	b.ReportAllocs()
	for b.Loop() {
		m.Request("PUBLISH", "presence", "200", time.Millisecond)
	}
}

func TestNilIsSafe(t *testing.T) {
	var m *Metrics
	m.Request("PUBLISH", "presence", "200", time.Millisecond)
	m.InFlight(1)
	m.Notify("dialog", 200)
	m.Ingest("trace", "call", "accepted")
	m.Drop("hep", "untrusted")
	m.QueueDepth("ingest", 3)
	m.StoreFlush(time.Millisecond, errors.New("x"))
	m.Tracker("usrloc", "published")
	m.HTTPRefused(RefusedUntrusted)
	m.StoreQuarantined("pua")
	if m.Registry() != nil || m.Register(nil) != nil {
		t.Fatal("nil metrics must have no registry")
	}
}

func TestCountersMove(t *testing.T) {
	m := New()
	m.Request("PUBLISH", "presence", StatusLabel(200, false), time.Millisecond)
	m.Request("PUBLISH", "presence", StatusLabel(0, true), time.Second)
	m.Drop("replicate", "untrusted")
	m.Drop("replicate", "untrusted")
	m.StoreFlush(time.Millisecond, errors.New("db down"))
	m.StoreQuarantined("puaside_contacts")
	if got := testutil.ToFloat64(m.quarantined.WithLabelValues("puaside_contacts")); got != 1 {
		t.Errorf("quarantined %v", got)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("PUBLISH", "presence", "200")); got != 1 {
		t.Errorf("200 count %v", got)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("PUBLISH", "presence", "timeout")); got != 1 {
		t.Errorf("timeout count %v", got)
	}
	if got := testutil.ToFloat64(m.drops.WithLabelValues("replicate", "untrusted")); got != 2 {
		t.Errorf("drops %v", got)
	}
	if got := testutil.ToFloat64(m.storeFailures); got != 1 {
		t.Errorf("store failures %v", got)
	}
	n, err := testutil.GatherAndCount(m.Registry(), "puaside_sip_request_duration_seconds")
	if err != nil || n != len(sipMethods())*len(sipEvents()) { // created at start
		t.Errorf("latency series %d, %v", n, err)
	}
	if StatusLabel(0, false) != "error" {
		t.Error("no reply without timeout must be error")
	}
	if got := testutil.ToFloat64(m.drops.WithLabelValues("replicate", "oversize")); got != 0 {
		t.Errorf("pre-created drops %v", got)
	}
}

// TestRequestCountsEveryTransaction: the children Request keeps count
// each transaction once, and two statuses of one method and event share
// its latency series.
func TestRequestCountsEveryTransaction(t *testing.T) {
	m := New()
	for range 3 {
		m.Request("PUBLISH", "dialog", "200", time.Millisecond)
	}
	m.Request("PUBLISH", "dialog", "500", time.Millisecond)
	if got := testutil.ToFloat64(m.requests.WithLabelValues("PUBLISH", "dialog", "200")); got != 3 {
		t.Errorf("200 count %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("PUBLISH", "dialog", "500")); got != 1 {
		t.Errorf("500 count %v, want 1", got)
	}
	var out dto.Metric
	if err := m.latency.WithLabelValues("PUBLISH", "dialog").(prometheus.Histogram).Write(&out); err != nil {
		t.Fatal(err)
	}
	if got := out.GetHistogram().GetSampleCount(); got != 4 {
		t.Errorf("latency samples %d, want 4", got)
	}
}

// TestCountersExistAtZero: the ingest and refusal counters are exported
// before anything happened, so "stays at 0" alerts can fire.
func TestCountersExistAtZero(t *testing.T) {
	m := New()
	for _, c := range []struct {
		name string
		min  int
	}{
		{"puaside_ingest_messages_total", len(ingestInputs()) * len(ingestKinds()) * len(ingestResults())},
		{"puaside_ingest_dropped_total", len(ingestInputs()) * len(dropReasons())},
		{"puaside_http_refused_total", len(refusedReasons())},
	} {
		n, err := testutil.GatherAndCount(m.Registry(), c.name)
		if err != nil {
			t.Fatal(err)
		}
		if n < c.min {
			t.Errorf("%s: %d series at start, want at least %d", c.name, n, c.min)
		}
	}
	m.HTTPRefused(RefusedUntrusted)
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(`
# HELP puaside_http_refused_total Management API requests refused by the token check, the trusted-source check of control endpoints, or the reserved-header check, by reason.
# TYPE puaside_http_refused_total counter
puaside_http_refused_total{reason="reserved_header"} 0
puaside_http_refused_total{reason="unauthorised"} 0
puaside_http_refused_total{reason="untrusted_source"} 1
`), "puaside_http_refused_total"); err != nil {
		t.Error(err)
	}
}

// TestEveryCounterExistsAtStart: every counter puaside exports has series
// (at zero) before anything happened, so that rate() sees the first event
// and "stays at 0" alerts can fire. A counter added to New must be added
// here and get its pre-created label values.
func TestEveryCounterExistsAtStart(t *testing.T) {
	m := New()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, mf := range mfs {
		got[mf.GetName()] = len(mf.GetMetric())
	}
	for _, name := range []string{
		"puaside_sip_requests_total", "puaside_notify_received_total",
		"puaside_ingest_messages_total", "puaside_ingest_dropped_total",
		"puaside_store_flush_failures_total", "puaside_store_rows_quarantined_total",
		"puaside_tracker_events_total", "puaside_http_refused_total", "puaside_board_clients_dropped_total",
		"puaside_pua_refused_total", "puaside_pua_refused_retries_total",
		"puaside_presence_server_probes_total", "puaside_presence_server_return_flushed_total",
		"puaside_queue_depth", "puaside_presence_server_up", "puaside_sip_requests_in_flight",
	} {
		if got[name] == 0 {
			t.Errorf("%s has no series at start", name)
		}
	}
	for name := range got {
		if strings.HasPrefix(name, "puaside_") && strings.HasSuffix(name, "_total") && got[name] == 0 {
			t.Errorf("%s exported without series", name)
		}
	}
}

// TestNotifyLabelIsStatus: one label name for a SIP status, "status",
// on every metric (notify_received_total used "code").
func TestNotifyLabelIsStatus(t *testing.T) {
	m := New()
	m.Notify("dialog;sla", 489)
	if got := testutil.ToFloat64(m.notifies.With(map[string]string{"event": "dialog;sla", "status": "489"})); got != 1 {
		t.Fatalf("notify{status=489} = %v", got)
	}
}
