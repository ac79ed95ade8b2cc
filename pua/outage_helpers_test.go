package pua

import (
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/puaside/puaside/metrics"
)

// publishes returns how many PUBLISHes arrived at fs.
func publishes(fs *fakeServer) int {
	n := 0
	for _, r := range fs.Requests() {
		if r.Method == sip.PUBLISH {
			n++
		}
	}
	return n
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
