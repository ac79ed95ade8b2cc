package pa

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/puaside/puaside/internal/sipphone"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, addr := startServer(t, DefaultConfig(), Options{Registerer: reg})
	bob := sipphone.NewPhone(t, "bob", "example.com")
	w, err := bob.Watch(context.Background(), addr, uri("sip:alice@example.com"), "presence", sipphone.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wait(t, w, has("closed"))
	publishOpen(t, s, "sip:alice@example.com", "u", "t1")
	wait(t, w, has(`id="t1"`))
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(s.met.notifies.WithLabelValues(EventPresence, "200")) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("NOTIFYs not counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := gauges(t, reg, "puaside_pa_subscriptions"); got["presence/active"] != 1 || got["presence/pending"] != 0 || got["dialog/active"] != 0 {
		t.Fatalf("puaside_pa_subscriptions %v, want presence/active 1, the others 0", got)
	}
	if got := gauges(t, reg, "puaside_pa_presentities"); got["presence"] != 1 || got["dialog"] != 0 {
		t.Fatalf("puaside_pa_presentities %v, want presence 1, dialog 0", got)
	}
	if got := latencyCounts(t, reg); got[EventPresence] == 0 || got[EventDialog] != 0 {
		t.Fatalf("NOTIFY latency observations by event %v, want some for presence only", got)
	}
	if got := testutil.ToFloat64(s.met.subscribes.WithLabelValues(EventPresence, "200")); got != 1 {
		t.Fatalf("subscribes %v", got)
	}
	if got := testutil.ToFloat64(s.met.pubs.WithLabelValues("inprocess", "ok")); got != 1 {
		t.Fatalf("publications %v", got)
	}
}

// gauges reads the series of one gauge family: label values joined by "/"
// (in label name order) → value.
func gauges(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var vals []string
			for _, l := range m.GetLabel() {
				vals = append(vals, l.GetValue())
			}
			out[strings.Join(vals, "/")] = m.GetGauge().GetValue()
		}
	}
	return out
}

// TestMetricsAtZero: before any SUBSCRIBE or PUBLISH the presence server's
// gauges of the usual event packages exist at 0, as its counters do.
func TestMetricsAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	startServer(t, DefaultConfig(), Options{Registerer: reg})
	subs := gauges(t, reg, "puaside_pa_subscriptions")
	pres := gauges(t, reg, "puaside_pa_presentities")
	for _, ev := range []string{EventPresence, EventDialog, EventSLA} {
		for _, st := range []string{"active", "pending"} {
			if v, ok := subs[ev+"/"+st]; !ok || v != 0 {
				t.Errorf("puaside_pa_subscriptions{event=%q,state=%q} = %v (present %v), want 0", ev, st, v, ok)
			}
		}
		if v, ok := pres[ev]; !ok || v != 0 {
			t.Errorf("puaside_pa_presentities{event=%q} = %v (present %v), want 0", ev, v, ok)
		}
	}
}

// latencyCounts reads puaside_pa_notify_latency_seconds' observation
// counts by event.
func latencyCounts(t *testing.T, reg *prometheus.Registry) map[string]uint64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, f := range fams {
		if f.GetName() != "puaside_pa_notify_latency_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetHistogram().GetSampleCount()
		}
	}
	return out
}
