// Package metrics holds puaside's Prometheus collectors. One *Metrics is
// built in main and handed to every component; all methods are safe on a nil
// receiver, so tests may pass nil. The management interface serves the
// registry at /metrics.
package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/puaside/puaside/internal/buildinfo"
)

// Metrics is the set of puaside's collectors.
type Metrics struct {
	reg *prometheus.Registry

	requests      *prometheus.CounterVec   // method, event, status
	latency       *prometheus.HistogramVec // method, event
	notifies      *prometheus.CounterVec   // event, status
	ingest        *prometheus.CounterVec   // input, kind, result
	drops         *prometheus.CounterVec   // input, reason
	queueDepth    *prometheus.GaugeVec     // queue
	storeFlush    prometheus.Histogram
	storeFailures prometheus.Counter
	quarantined   *prometheus.CounterVec // table
	trackerEvents *prometheus.CounterVec // tracker, what
	inflight      prometheus.Gauge
	httpRefused   *prometheus.CounterVec // reason
	boardDropped  *prometheus.CounterVec // reason
	outage        *outageMetrics
	cluster       *clusterMetrics
	// depth and events cache the children of queueDepth and
	// trackerEvents, set on every queued item and tracked message (a
	// label lookup hashes and compares the label values each time).
	depth  sync.Map // queue → prometheus.Gauge
	events sync.Map // [2]string{tracker, what} → prometheus.Counter
	// ingested caches the children of ingest (one a message otherwise
	// costs a label hash and a lookup).
	ingested sync.Map // [3]string{input, kind, result} → prometheus.Counter
	// requested caches the children of requests and latency, one pair
	// for each method, event and status (one a finished transaction).
	requested sync.Map // [3]string{method, event, status} → requestChildren
}

// requestChildren are the children of requests and latency of one
// method, event and status.
type requestChildren struct {
	count   prometheus.Counter
	latency prometheus.Observer
}

// Reasons of puaside_http_refused_total: requests the management plane
// did not let through.
const (
	// RefusedUnauthorised: missing or wrong bearer token (401).
	RefusedUnauthorised = "unauthorised"
	// RefusedUntrusted: a control endpoint called from outside
	// http.trusted_sources (403).
	RefusedUntrusted = "untrusted_source"
	// RefusedReservedHeader: extra_headers naming a header the engine
	// builds itself, such as Via or Call-ID (400).
	RefusedReservedHeader = "reserved_header"
)

// The label values the ingest counters are created with at start, so that
// every series exists at zero before the first message (an alert on "no
// mirrored traffic" needs the series). Further values appear on first use.
func ingestInputs() []string { return []string{"replicate", "trace", "hep", "json"} }
func ingestKinds() []string {
	return []string{"register", "register_reply", "call", "event", "other"}
}
func boardDropReasons() []string { return []string{"slow", "write_error", "too_many_clients"} }
func ingestResults() []string    { return []string{"accepted", "duplicate", "ignored", "error"} }
func dropReasons() []string {
	return []string{"untrusted", "oversize", "parse_error", "hep_decode", "hep_auth", "queue_full", "stopped", "framing", "too_many_conns", "tls_handshake",
		"uri_too_long", "callid_too_long", "tag_too_long", "header_too_long"}
}
func refusedReasons() []string {
	return []string{RefusedUnauthorised, RefusedUntrusted, RefusedReservedHeader}
}

// The methods and event packages of the SIP counters created at start;
// further values appear on first use.
func sipMethods() []string { return []string{"PUBLISH", "SUBSCRIBE"} }
func sipEvents() []string  { return []string{"presence", "dialog", "dialog;sla"} }

// sipOutcomes are the status values of puaside_sip_requests_total created
// at start: success and the two outcomes without a reply.
func sipOutcomes() []string { return []string{"200", "timeout", "error"} }

// refusedStatuses are the refusals of puaside_pua_refused_total created at
// start (200 is a 2xx to PUBLISH without SIP-ETag).
func refusedStatuses() []string {
	return []string{"200", "400", "403", "404", "405", "415", "480", "489", "603"}
}

// notifyEvents are the NOTIFYs puaside receives: dialog;sla from the
// shared-line phones, presence for manual subscriptions.
func notifyEvents() []string { return []string{"presence", "dialog", "dialog;sla"} }

// storeTables are the tables whose quarantine counter exists at start;
// the pua table's name (db_table) is added by KnownTable.
func storeTables() []string {
	return []string{"pua", "puaside_contacts", "puaside_publish_flags", "puaside_dialogs", "puaside_dialog_versions", "puaside_shared_lines"}
}

// trackerWhats are the main tracker events created at start, by tracker.
func trackerWhats() map[string][]string {
	return map[string][]string{
		"usrloc":     {"contact_added", "contact_expired", "published", "removed", "publish_error", "store_error"},
		"dialoginfo": {"call_created", "call_ended", "publish_error", "remove_error", "store_error"},
		"bla":        {"subscribe", "unsubscribe", "subscribe_error", "relayed", "publish_error", "seize_conflict"},
	}
}

// probeResults are the results of puaside_presence_server_probes_total.
func probeResults() []string { return []string{"reply", "timeout", "error"} }

// New builds the collectors and registers them, with the Go and process
// collectors, on a fresh registry.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "puaside_sip_requests_total",
		Help: "PUBLISH and SUBSCRIBE transactions sent, by method, event and final status (timeout, error for no reply).",
	}, []string{"method", "event", "status"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "puaside_sip_request_duration_seconds",
		Help:    "Time from sending a PUBLISH or SUBSCRIBE to its final reply.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 32},
	}, []string{"method", "event"})
	m.notifies = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "puaside_notify_received_total",
		Help: "NOTIFY requests received, by event and the status puaside answered.",
	}, []string{"event", "status"})
	m.ingest = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "puaside_ingest_messages_total",
		Help: "Mirrored messages and JSON events received, by input, kind and result.",
	}, []string{"input", "kind", "result"})
	m.drops = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "puaside_ingest_dropped_total",
		Help: "Input dropped, by input and reason.",
	}, []string{"input", "reason"})
	m.queueDepth = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "puaside_queue_depth",
		Help: "Items waiting in an internal queue.",
	}, []string{"queue"})
	m.storeFlush = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "puaside_store_flush_duration_seconds",
		Help:    "Duration of write-behind flushes to the database.",
		Buckets: prometheus.DefBuckets,
	})
	m.storeFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "puaside_store_flush_failures_total",
		Help: "Write-behind flushes that failed (the records stay dirty and are retried).",
	})
	m.quarantined = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "puaside_store_rows_quarantined_total",
		Help: "Rows the database refused and the store set aside (not written, not retried), by table.",
	}, []string{"table"})
	m.trackerEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "puaside_tracker_events_total",
		Help: "Tracker events by tracker and what happened (e.g. usrloc contact_added, dialoginfo ignored_unknown_call).",
	}, []string{"tracker", "what"})
	m.inflight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "puaside_sip_requests_in_flight",
		Help: "PUBLISH and SUBSCRIBE transactions waiting for a final reply.",
	})
	m.httpRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "puaside_http_refused_total",
		Help: "Management API requests refused by the token check, the trusted-source check of control endpoints, or the reserved-header check, by reason.",
	}, []string{"reason"})
	m.boardDropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "puaside_board_clients_dropped_total",
		Help: "Lamp board event streams refused or dropped, by reason (slow, write_error, too_many_clients).",
	}, []string{"reason"})
	m.outage = newOutageMetrics(m.reg)
	m.cluster = newClusterMetrics(m.reg)
	m.reg.MustRegister(m.requests, m.latency, m.notifies, m.ingest, m.drops, m.queueDepth,
		m.storeFlush, m.storeFailures, m.quarantined, m.trackerEvents, m.inflight, m.httpRefused, m.boardDropped,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newBuildInfo(buildinfo.Get()))
	m.precreate()
	return m
}

// precreate creates the labelled counters' known series at zero.
func (m *Metrics) precreate() {
	for _, in := range ingestInputs() {
		for _, k := range ingestKinds() {
			for _, r := range ingestResults() {
				m.ingest.WithLabelValues(in, k, r)
			}
		}
		for _, r := range dropReasons() {
			m.drops.WithLabelValues(in, r)
		}
	}
	for _, r := range refusedReasons() {
		m.httpRefused.WithLabelValues(r)
	}
	for _, r := range boardDropReasons() {
		m.boardDropped.WithLabelValues(r)
	}
	for _, meth := range sipMethods() {
		for _, ev := range sipEvents() {
			for _, st := range sipOutcomes() {
				m.requests.WithLabelValues(meth, ev, st)
			}
			for _, st := range refusedStatuses() {
				m.outage.refused.WithLabelValues(meth, ev, st)
			}
			m.outage.retries.WithLabelValues(meth, ev)
			m.latency.WithLabelValues(meth, ev)
		}
	}
	for _, ev := range notifyEvents() {
		m.notifies.WithLabelValues(ev, "200")
	}
	for _, t := range storeTables() {
		m.quarantined.WithLabelValues(t)
	}
	for tr, whats := range trackerWhats() {
		for _, w := range whats {
			m.trackerEvents.WithLabelValues(tr, w)
		}
	}
	for _, r := range probeResults() {
		m.outage.probes.WithLabelValues(r)
	}
	m.queueDepth.WithLabelValues("ingest")
}

// KnownTable creates the quarantine counter of a table at zero (the pua
// table under its configured name, db_table).
func (m *Metrics) KnownTable(table string) {
	if m == nil {
		return
	}
	m.quarantined.WithLabelValues(table)
}

// HTTPRefused counts a management request refused for reason (one of the
// Refused* constants).
func (m *Metrics) HTTPRefused(reason string) {
	if m == nil {
		return
	}
	m.httpRefused.WithLabelValues(reason).Inc()
}

// BoardDropped counts a lamp board event stream refused or dropped for
// reason (slow, write_error, too_many_clients).
func (m *Metrics) BoardDropped(reason string) {
	if m == nil {
		return
	}
	m.boardDropped.WithLabelValues(reason).Inc()
}

// Registry returns the registry to serve at /metrics.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Register adds a further collector (e.g. a gauge function over engine state).
func (m *Metrics) Register(c prometheus.Collector) error {
	if m == nil {
		return nil
	}
	return m.reg.Register(c)
}

// StatusLabel renders a SIP status for the status label: the code, or
// "timeout"/"error" when no reply arrived.
func StatusLabel(status int, timeout bool) string {
	switch {
	case status > 0:
		return strconv.Itoa(status)
	case timeout:
		return "timeout"
	}
	return "error"
}

// Request counts a finished PUBLISH/SUBSCRIBE transaction and its latency.
// status is a StatusLabel value.
func (m *Metrics) Request(method, event, status string, d time.Duration) {
	if m == nil {
		return
	}
	k := [3]string{method, event, status}
	c, ok := m.requested.Load(k)
	if !ok {
		c, _ = m.requested.LoadOrStore(k, requestChildren{
			count:   m.requests.WithLabelValues(method, event, status),
			latency: m.latency.WithLabelValues(method, event),
		})
	}
	rc := c.(requestChildren)
	rc.count.Inc()
	rc.latency.Observe(d.Seconds())
}

// InFlight adds delta to the number of transactions waiting for a reply.
func (m *Metrics) InFlight(delta int) {
	if m == nil {
		return
	}
	m.inflight.Add(float64(delta))
}

// Notify counts a received NOTIFY and the code answered.
func (m *Metrics) Notify(event string, code int) {
	if m == nil {
		return
	}
	m.notifies.WithLabelValues(event, strconv.Itoa(code)).Inc()
}

// Ingest counts one input message by input (replicate, trace, hep, json),
// kind (register, register_reply, call, event, other) and result (accepted,
// duplicate, ignored, error).
func (m *Metrics) Ingest(input, kind, result string) {
	if m == nil {
		return
	}
	k := [3]string{input, kind, result}
	c, ok := m.ingested.Load(k)
	if !ok {
		c, _ = m.ingested.LoadOrStore(k, m.ingest.WithLabelValues(input, kind, result))
	}
	c.(prometheus.Counter).Inc()
}

// Drop counts input dropped before processing, with the reason
// (untrusted, parse_error, oversize, queue_full, hep_auth, ...).
func (m *Metrics) Drop(input, reason string) {
	if m == nil {
		return
	}
	m.drops.WithLabelValues(input, reason).Inc()
}

// QueueDepth sets the depth of a named queue.
func (m *Metrics) QueueDepth(queue string, n int) {
	if m == nil {
		return
	}
	g, ok := m.depth.Load(queue)
	if !ok {
		g, _ = m.depth.LoadOrStore(queue, m.queueDepth.WithLabelValues(queue))
	}
	g.(prometheus.Gauge).Set(float64(n))
}

// StoreFlush records a write-behind flush and whether it failed.
func (m *Metrics) StoreFlush(d time.Duration, err error) {
	if m == nil {
		return
	}
	m.storeFlush.Observe(d.Seconds())
	if err != nil {
		m.storeFailures.Inc()
	}
}

// StoreQuarantined counts a row set aside by the store because the
// database refused it (or it can never fit its columns).
func (m *Metrics) StoreQuarantined(table string) {
	if m == nil {
		return
	}
	m.quarantined.WithLabelValues(table).Inc()
}

// Tracker counts a tracker event.
func (m *Metrics) Tracker(tracker, what string) {
	if m == nil {
		return
	}
	k := [2]string{tracker, what}
	c, ok := m.events.Load(k)
	if !ok {
		c, _ = m.events.LoadOrStore(k, m.trackerEvents.WithLabelValues(tracker, what))
	}
	c.(prometheus.Counter).Inc()
}
