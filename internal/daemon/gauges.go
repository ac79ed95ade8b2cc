package daemon

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// registerGauges exports the trackers' sizes, read at scrape time. Every
// gauge exists from the start; a tracker that is off reads 0.
func (d *Daemon) registerGauges() error {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	cs := []prometheus.Collector{
		gauge("puaside_registrations", "Addresses of record with at least one registered contact (usrloc).", func() float64 {
			if d.ul == nil {
				return 0
			}
			n, _ := d.ul.Counts()
			return float64(n)
		}),
		gauge("puaside_contacts", "Registered contacts of all addresses of record (usrloc).", func() float64 {
			if d.ul == nil {
				return 0
			}
			_, n := d.ul.Counts()
			return float64(n)
		}),
		gauge("puaside_active_dialogs", "Dialogs (call branches) not yet terminated (dialoginfo).", func() float64 {
			if d.di == nil {
				return 0
			}
			return float64(d.di.ActiveDialogs())
		}),
		gauge("puaside_lines", "Shared lines, from the file and the database (bla).", func() float64 {
			if d.bl == nil {
				return 0
			}
			n, _ := d.bl.Counts()
			return float64(n)
		}),
		gauge("puaside_line_phones_subscribed", "Shared-line phones puaside holds a subscription to (bla).", func() float64 {
			if d.bl == nil {
				return 0
			}
			_, n := d.bl.Counts()
			return float64(n)
		}),
	}
	for _, c := range cs {
		if err := d.m.Register(c); err != nil {
			return fmt.Errorf("register gauges: %w", err)
		}
	}
	return nil
}
