package metrics

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

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
	if err != nil || n != 1 {
		t.Errorf("latency series %d, %v", n, err)
	}
	if StatusLabel(0, false) != "error" {
		t.Error("no reply without timeout must be error")
	}
	if err := testutil.CollectAndCompare(m.drops, strings.NewReader(`
# HELP puaside_ingest_dropped_total Input dropped, by input and reason.
# TYPE puaside_ingest_dropped_total counter
puaside_ingest_dropped_total{input="replicate",reason="untrusted"} 2
`)); err != nil {
		t.Error(err)
	}
}
