package mgmt_test

import (
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/puaside/puaside/pua"
)

func TestMetricsPublicationGauge(t *testing.T) {
	f := newFixture(t, nil)
	set := func(uri, ev, state string) {
		f.eng.SetPublication(pua.PublicationInfo{Key: pua.Key{PresURI: uri, Event: ev}, State: state})
	}
	set("sip:a@x", "presence", pua.StateActive)
	set("sip:b@x", "presence", pua.StateActive)
	set("sip:c@x", "presence", pua.StateFailed)
	set("sip:a@x", "dialog", pua.StatePending)
	f.eng.SetSubscription(pua.SubscriptionInfo{Key: pua.SubKey{PresURI: "sip:l@x", WatcherURI: "sip:w@x", Event: "dialog;sla"}, State: pua.StateActive})

	scrape := func() map[string]float64 {
		t.Helper()
		a := do(t, "GET", f.base+"/metrics", "", nil)
		if a.code != 200 {
			t.Fatalf("/metrics: %d", a.code)
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(strings.NewReader(a.raw))
		if err != nil {
			t.Fatalf("parse /metrics: %v", err)
		}
		out := map[string]float64{}
		for _, name := range []string{"puaside_publications", "puaside_subscriptions"} {
			fam, ok := fams[name]
			if !ok {
				continue
			}
			for _, m := range fam.GetMetric() {
				key := name
				for _, l := range m.GetLabel() {
					key += "," + l.GetName() + "=" + l.GetValue()
				}
				if v := m.GetGauge().GetValue(); v != 0 { // the zero states are checked apart
					out[key] = v
				}
			}
		}
		if _, ok := fams["puaside_sip_requests_in_flight"]; !ok {
			t.Errorf("the shared metrics are not served")
		}
		return out
	}
	got := scrape()
	want := map[string]float64{
		"puaside_publications,event=presence,state=active":    2,
		"puaside_publications,event=presence,state=failed":    1,
		"puaside_publications,event=dialog,state=pending":     1,
		"puaside_subscriptions,event=dialog;sla,state=active": 1,
	}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	// the gauge follows the engine's state at scrape time
	set("sip:c@x", "presence", pua.StateActive)
	got = scrape()
	if got["puaside_publications,event=presence,state=active"] != 3 || got["puaside_publications,event=presence,state=failed"] != 0 {
		t.Errorf("after change: %v", got)
	}
}

// TestPublicationStatesExistAtZero: with no publication at all, every
// state of presence and dialog is exported at 0.
func TestPublicationStatesExistAtZero(t *testing.T) {
	f := newFixture(t, nil)
	a := do(t, "GET", f.base+"/metrics", "", nil)
	for _, st := range []string{"pending", "active", "retrying", "failed", "removing"} {
		for _, ev := range []string{"presence", "dialog"} {
			want := `puaside_publications{event="` + ev + `",state="` + st + `"} 0`
			if !strings.Contains(a.raw, want) {
				t.Errorf("no %s in /metrics", want)
			}
		}
	}
}
