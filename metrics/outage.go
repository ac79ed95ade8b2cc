package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// outageMetrics are the collectors of refused records and of the presence
// server's reachability.
type outageMetrics struct {
	refused  *prometheus.CounterVec // method, event, status
	retries  *prometheus.CounterVec // method, event
	serverUp prometheus.Gauge
	probes   *prometheus.CounterVec // result
	flushed  prometheus.Counter
}

func newOutageMetrics(reg *prometheus.Registry) *outageMetrics {
	o := &outageMetrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "puaside_pua_refused_total",
			Help: "PUBLISH and SUBSCRIBE refusals (4xx other than 412/423, 6xx, 2xx to PUBLISH without SIP-ETag) after which the record is retried slowly, by method, event and status.",
		}, []string{"method", "event", "status"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "puaside_pua_refused_retries_total",
			Help: "Refused publications and subscriptions tried again after their refused backoff, by method and event.",
		}, []string{"method", "event"}),
		serverUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "puaside_presence_server_up",
			Help: "1 while the presence server answers (or has not failed yet), 0 while it looks down (timeouts, transport errors, 408/502/503/504) until it answers an OPTIONS probe or a request.",
		}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "puaside_presence_server_probes_total",
			Help: "OPTIONS probes sent to the presence server while it looked down, by result (reply, timeout, error).",
		}, []string{"result"}),
		flushed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "puaside_presence_server_return_flushed_total",
			Help: "Records backing off that were sent at once when the presence server came back.",
		}),
	}
	o.serverUp.Set(1)
	reg.MustRegister(o.refused, o.retries, o.serverUp, o.probes, o.flushed)
	return o
}

// Refused counts a refusal of a PUBLISH or SUBSCRIBE (status 0 is not
// expected: a refusal always has a reply).
func (m *Metrics) Refused(method, event string, status int) {
	if m == nil {
		return
	}
	m.outage.refused.WithLabelValues(method, event, strconv.Itoa(status)).Inc()
}

// RefusedRetry counts a refused record tried again.
func (m *Metrics) RefusedRetry(method, event string) {
	if m == nil {
		return
	}
	m.outage.retries.WithLabelValues(method, event).Inc()
}

// ServerUp sets the presence server's reachability gauge.
func (m *Metrics) ServerUp(up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.outage.serverUp.Set(v)
}

// Probe counts an OPTIONS probe by result: "reply", "timeout" or "error".
func (m *Metrics) Probe(result string) {
	if m == nil {
		return
	}
	m.outage.probes.WithLabelValues(result).Inc()
}

// ReturnFlushed counts records sent at once on the presence server's return.
func (m *Metrics) ReturnFlushed(n int) {
	if m == nil {
		return
	}
	m.outage.flushed.Add(float64(n))
}
