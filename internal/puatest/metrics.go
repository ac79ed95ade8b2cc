package puatest

import (
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/puaside/puaside/metrics"
)

// Metric returns the sum of the samples of the counter or gauge name whose
// labels include every pair of labels (nil: every sample).
func Metric(tb testing.TB, m *metrics.Metrics, name string, labels map[string]string) float64 {
	tb.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		tb.Fatalf("gather metrics: %v", err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			if labelsInclude(s.GetLabel(), labels) {
				sum += s.GetCounter().GetValue() + s.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// TrackerEvents reads puaside_tracker_events_total{tracker, what}.
func TrackerEvents(tb testing.TB, m *metrics.Metrics, tracker, what string) float64 {
	tb.Helper()
	return Metric(tb, m, "puaside_tracker_events_total", map[string]string{"tracker": tracker, "what": what})
}

func labelsInclude(ls []*dto.LabelPair, want map[string]string) bool {
	n := 0
	for _, l := range ls {
		if v, ok := want[l.GetName()]; ok {
			if v != l.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(want)
}
