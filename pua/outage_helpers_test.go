package pua

import (
	"testing"

	"github.com/emiago/sipgo/sip"
	dto "github.com/prometheus/client_model/go"

	"github.com/puaside/puaside/metrics"
)

// options answers OPTIONS with optCode (200 by default).
func (fs *fakeServer) options(req *sip.Request, tx sip.ServerTransaction) {
	fs.mu.Lock()
	fs.optN++
	code := fs.optCode
	fs.mu.Unlock()
	if code == 0 {
		code = 200
	}
	_ = tx.Respond(sip.NewResponseFromRequest(req, code, "Probe", nil))
}

// setOptions sets the status answered to OPTIONS.
func (fs *fakeServer) setOptions(code int) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.optCode = code
}

// optionsSeen returns how many OPTIONS arrived.
func (fs *fakeServer) optionsSeen() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.optN
}

// publishes returns how many PUBLISHes arrived.
func (fs *fakeServer) publishes() int {
	n := 0
	for _, r := range fs.requests() {
		if r.Method == sip.PUBLISH {
			n++
		}
	}
	return n
}

// metricValue returns the sum of the samples of a counter or gauge whose
// labels include want.
func metricValue(t *testing.T, m *metrics.Metrics, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			if labelsMatch(s.GetLabel(), want) {
				sum += s.GetCounter().GetValue() + s.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func labelsMatch(ls []*dto.LabelPair, want map[string]string) bool {
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

// newMeteredEngine is newTestEngine with metrics (and a store when st is
// not nil), keeping the default initial lease.
func newMeteredEngine(t *testing.T, fs *fakeServer, clk Clock, st Store, mod func(*Config)) (*Engine, *metrics.Metrics) {
	t.Helper()
	cfg := testConfig(fs)
	if mod != nil {
		mod(&cfg)
	}
	m := metrics.New()
	return startTestEngine(t, cfg, Options{Clock: clk, Store: st, Metrics: m}), m
}
