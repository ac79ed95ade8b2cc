package pa

import (
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/puaside/puaside/internal/wsguard"
)

// serverMetrics are the presence server's Prometheus series.
type serverMetrics struct {
	subscribes *prometheus.CounterVec
	pubs       *prometheus.CounterVec
	notifies   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	sizes      *prometheus.HistogramVec
	parts      *prometheus.HistogramVec
	endedC     *prometheus.CounterVec
	storeErrs  prometheus.Counter
	wsDropped  *prometheus.CounterVec
	gwErrs     prometheus.Counter
	subsDesc   *prometheus.Desc
	presDesc   *prometheus.Desc
	s          *Server
}

func newServerMetrics(reg prometheus.Registerer, s *Server) (*serverMetrics, error) {
	m := &serverMetrics{
		s: s,
		subscribes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "puaside_pa_subscribes_total",
			Help: "SUBSCRIBEs received by the presence server, by event package and reply status."}, []string{"event", "status"}),
		pubs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "puaside_pa_publications_total",
			Help: "Publications received by the presence server, by source (sip, inprocess) and status (the reply status to a PUBLISH; ok, bad_body or bad_event in process)."}, []string{"source", "status"}),
		notifies: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "puaside_pa_notifies_total",
			Help: "NOTIFYs sent by the presence server, by event package and status (the reply status, timeout or error)."}, []string{"event", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "puaside_pa_notify_latency_seconds",
			Help:    "Time from a change of state (publication, watcher list) to the reply of the NOTIFY that told it.",
			Buckets: []float64{.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"event"}),
		sizes: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "puaside_pa_composed_bytes",
			Help: "Size of the documents composed for NOTIFYs.", Buckets: prometheus.ExponentialBuckets(256, 2, 10)}, []string{"event"}),
		parts: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "puaside_pa_composed_publications",
			Help: "Publications composed into one NOTIFY document.", Buckets: []float64{0, 1, 2, 3, 5, 10, 20, 50}}, []string{"event"}),
		endedC: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "puaside_pa_subscriptions_ended_total",
			Help: "Subscriptions ended (unsubscribed, expired, refused by the watcher or failed), by event package."}, []string{"event"}),
		storeErrs: prometheus.NewCounter(prometheus.CounterOpts{Name: "puaside_pa_store_errors_total",
			Help: "Failed writes of the presence server's state (retried)."}),
		wsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "puaside_pa_websocket_dropped_total",
			Help: "WebSocket (ws:, wss:) connections the presence server closed, by reason (handshake_timeout, frame_too_large, frame_flood, ...)."}, []string{"reason"}),
		gwErrs: prometheus.NewCounter(prometheus.CounterOpts{Name: "puaside_pa_gateway_errors_total",
			Help: "Watchers of a gateway's presentities (XMPP users) the gateway refused or failed to tell of, and SUBSCRIBEs to its addresses that name no one (answered 404)."}),
		subsDesc: prometheus.NewDesc("puaside_pa_subscriptions", "Subscriptions held by the presence server, by event package and state.",
			[]string{"event", "state"}, nil),
		presDesc: prometheus.NewDesc("puaside_pa_presentities", "Presentities with publications or watchers, by event package.",
			[]string{"event"}, nil),
	}
	// Every usual series exists at 0 from the start.
	for _, ev := range metricEvents() {
		for _, st := range []string{"200", "400", "403", "423", "481", "489"} {
			m.subscribes.WithLabelValues(ev, st)
		}
		for _, res := range []string{"200", "408", "481", "500", "timeout", "error"} {
			m.notifies.WithLabelValues(ev, res)
		}
		m.endedC.WithLabelValues(ev)
		m.latency.WithLabelValues(ev)
		m.sizes.WithLabelValues(ev)
		m.parts.WithLabelValues(ev)
	}
	for _, r := range []string{wsguard.ReasonHandshakeTimeout, wsguard.ReasonHandshakeTLS, wsguard.ReasonHandshakeLarge,
		wsguard.ReasonHandshakeInvalid, wsguard.ReasonTooManyPending, wsguard.ReasonFrameTooLarge, wsguard.ReasonFragmented,
		wsguard.ReasonBinary, wsguard.ReasonControlPayload, wsguard.ReasonInvalidFrame, wsguard.ReasonFlood} {
		m.wsDropped.WithLabelValues(r)
	}
	for _, src := range []string{"sip", "inprocess"} {
		for _, res := range []string{"ok", "200", "400", "412", "423", "489", "bad_body", "bad_event"} {
			m.pubs.WithLabelValues(src, res)
		}
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.subscribes, m.pubs, m.notifies, m.latency, m.sizes, m.parts, m.endedC, m.storeErrs, m.wsDropped, m.gwErrs, m} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// metricEvents are the event packages whose series exist from the start.
func metricEvents() []string {
	return []string{EventPresence, EventDialog, EventSLA, EventMA, EventWinfo, EventMWI}
}

// Describe implements prometheus.Collector for the gauges.
func (m *serverMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.subsDesc
	ch <- m.presDesc
}

// Collect implements prometheus.Collector for the gauges.
func (m *serverMetrics) Collect(ch chan<- prometheus.Metric) {
	type es struct{ ev, st string }
	subs := map[es]int{}
	pres := map[string]int{}
	// The usual series read 0 from the start, as the counters do.
	for _, ev := range metricEvents() {
		subs[es{ev, "active"}], subs[es{ev, "pending"}] = 0, 0
		pres[ev] = 0
	}
	s := m.s
	s.mu.Lock()
	for _, w := range s.subs {
		if !w.final {
			subs[es{w.event, w.status}]++
		}
	}
	for k := range s.pres {
		pres[k.event]++
	}
	s.mu.Unlock()
	for k, n := range subs {
		ch <- prometheus.MustNewConstMetric(m.subsDesc, prometheus.GaugeValue, float64(n), k.ev, k.st)
	}
	for ev, n := range pres {
		ch <- prometheus.MustNewConstMetric(m.presDesc, prometheus.GaugeValue, float64(n), ev)
	}
}

func (m *serverMetrics) subscribe(ev, status string) { m.subscribes.WithLabelValues(ev, status).Inc() }
func (m *serverMetrics) publication(src, res string) { m.pubs.WithLabelValues(src, res).Inc() }
func (m *serverMetrics) ended(ev string)             { m.endedC.WithLabelValues(ev).Inc() }
func (m *serverMetrics) storeError()                 { m.storeErrs.Inc() }
func (m *serverMetrics) gatewayError()               { m.gwErrs.Inc() }

func (m *serverMetrics) composed(ev string, pubs, size int) {
	m.parts.WithLabelValues(ev).Observe(float64(pubs))
	m.sizes.WithLabelValues(ev).Observe(float64(size))
}

func (m *serverMetrics) notified(ev string, code int, err error, changedAt, now time.Time) {
	res := strconv.Itoa(code)
	switch {
	case err != nil && (errors.Is(err, errTimeout) || isTimeout(err)):
		res = "timeout"
	case err != nil:
		res = "error"
	}
	m.notifies.WithLabelValues(ev, res).Inc()
	if err == nil && code >= 200 && code < 300 && !changedAt.IsZero() {
		m.latency.WithLabelValues(ev).Observe(now.Sub(changedAt).Seconds())
	}
}
