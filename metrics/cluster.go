package metrics

import "github.com/prometheus/client_golang/prometheus"

// clusterMetrics are the collectors of the shard leases (several instances
// on one database).
type clusterMetrics struct {
	renewals  *prometheus.CounterVec // result
	takeovers prometheus.Counter
	releases  prometheus.Counter
	owned     prometheus.Gauge
}

func newClusterMetrics(reg *prometheus.Registry) *clusterMetrics {
	c := &clusterMetrics{
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "puaside_cluster_lease_renewals_total",
			Help: "Lease renewal rounds (heartbeat and renewal of every lease held), by result (ok, error).",
		}, []string{"result"}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "puaside_cluster_takeovers_total",
			Help: "Shard leases taken by this instance (free, released or expired ones), each with a new epoch.",
		}),
		releases: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "puaside_cluster_releases_total",
			Help: "Shard leases released by this instance (rebalancing or clean stop).",
		}),
		owned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "puaside_cluster_owned_shards",
			Help: "Shards whose lease this instance holds.",
		}),
	}
	for _, r := range []string{"ok", "error"} {
		c.renewals.WithLabelValues(r)
	}
	reg.MustRegister(c.renewals, c.takeovers, c.releases, c.owned)
	return c
}

// LeaseRenewal counts a lease renewal round.
func (m *Metrics) LeaseRenewal(ok bool) {
	if m == nil {
		return
	}
	r := "ok"
	if !ok {
		r = "error"
	}
	m.cluster.renewals.WithLabelValues(r).Inc()
}

// LeaseTakeover counts a shard lease taken.
func (m *Metrics) LeaseTakeover() {
	if m == nil {
		return
	}
	m.cluster.takeovers.Inc()
}

// LeaseRelease counts a shard lease released.
func (m *Metrics) LeaseRelease() {
	if m == nil {
		return
	}
	m.cluster.releases.Inc()
}

// OwnedShards sets the number of shards held.
func (m *Metrics) OwnedShards(n int) {
	if m == nil {
		return
	}
	m.cluster.owned.Set(float64(n))
}
