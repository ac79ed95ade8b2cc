package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/puaside/puaside/internal/buildinfo"
)

// newBuildInfo is the puaside_build_info gauge: always 1, its labels say
// which binary runs (version, Go toolchain, VCS revision), so a dashboard
// can show and join on them.
func newBuildInfo(info buildinfo.Info) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "puaside_build_info",
		Help: "Build information of the running binary; the value is always 1.",
		ConstLabels: prometheus.Labels{
			"version":   info.Version,
			"goversion": info.GoVersion,
			"revision":  info.Revision,
		},
	}, func() float64 { return 1 })
}
