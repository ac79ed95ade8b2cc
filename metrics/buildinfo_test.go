package metrics

import (
	"runtime"
	"testing"
)

// TestBuildInfo: puaside_build_info is 1 with the version, Go version and
// revision labels.
func TestBuildInfo(t *testing.T) {
	mfs, err := New().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "puaside_build_info" {
			continue
		}
		if len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetGauge().GetValue() != 1 {
			t.Fatalf("puaside_build_info: %v", mf)
		}
		labels := map[string]string{}
		for _, l := range mf.GetMetric()[0].GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["version"] == "" || labels["revision"] == "" || labels["goversion"] != runtime.Version() {
			t.Errorf("puaside_build_info labels: %v", labels)
		}
		return
	}
	t.Fatal("no puaside_build_info")
}
