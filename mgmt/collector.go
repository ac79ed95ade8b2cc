package mgmt

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/puaside/puaside/pua"
)

// pubStates are the states of a publication (package pua).
var pubStates = []string{pua.StatePending, pua.StateActive, pua.StateRetrying, pua.StateFailed, pua.StateRemoving}

// stateCollector exports the engine's records by event and state, read at
// scrape time.
type stateCollector struct {
	eng  Engine
	pubs *prometheus.Desc
	subs *prometheus.Desc
}

func newStateCollector(eng Engine) *stateCollector {
	return &stateCollector{
		eng: eng,
		pubs: prometheus.NewDesc("puaside_publications",
			"Publications held by the pua engine, by event package and state.", []string{"event", "state"}, nil),
		subs: prometheus.NewDesc("puaside_subscriptions",
			"Subscriptions held by the pua engine, by event package and state.", []string{"event", "state"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pubs
	ch <- c.subs
}

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	type es struct{ event, state string }
	pubs := map[es]int{}
	// Every state of the usual events exists at zero, so that a state
	// appearing (failed, retrying) is a change a graph or alert sees.
	for _, ev := range []string{"presence", "dialog"} {
		for _, st := range pubStates {
			pubs[es{ev, st}] = 0
		}
	}
	for _, n := range c.eng.PublicationStates() {
		pubs[es{n.Event, n.State}] += n.N
	}
	for k, n := range pubs {
		ch <- constGauge(c.pubs, n, k.event, k.state)
	}
	subs := map[es]int{}
	for _, ev := range []string{"presence", "dialog;sla"} {
		for _, st := range pubStates {
			subs[es{ev, st}] = 0
		}
	}
	for _, n := range c.eng.SubscriptionStates() {
		subs[es{n.Event, n.State}] += n.N
	}
	for k, n := range subs {
		ch <- constGauge(c.subs, n, k.event, k.state)
	}
}

// constGauge builds a gauge sample; bad label values (not UTF-8) give an
// invalid metric, reported by the scrape, rather than a panic.
func constGauge(d *prometheus.Desc, n int, labels ...string) prometheus.Metric {
	m, err := prometheus.NewConstMetric(d, prometheus.GaugeValue, float64(n), labels...)
	if err != nil {
		return prometheus.NewInvalidMetric(d, err)
	}
	return m
}
