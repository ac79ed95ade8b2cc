package deploy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/internal/daemon"
)

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	Title  string  `json:"title"`
	UID    string  `json:"uid"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

var metricNameRE = regexp.MustCompile(`\bpuaside_[a-z_]+`)

// TestGrafanaDashboardMetricsExist reads deploy/grafana/puaside.json and
// checks that every metric its queries use is served by /metrics of a
// freshly started daemon, before any traffic (so no panel stays "No data"
// because a series appears only later).
func TestGrafanaDashboardMetricsExist(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("grafana", "puaside.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	if d.Title == "" || d.UID == "" {
		t.Fatalf("dashboard without title or uid")
	}
	used := map[string][]string{}
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, name := range metricNameRE.FindAllString(tg.Expr, -1) {
				used[name] = append(used[name], p.Title)
			}
		}
	}
	if len(used) == 0 {
		t.Fatal("the dashboard uses no puaside metric")
	}

	// pa, the default presence server, has its panels.
	for _, name := range []string{"puaside_pa_subscriptions", "puaside_pa_notifies_total",
		"puaside_pa_notify_latency_seconds_bucket", "puaside_pa_publications_total"} {
		if used[name] == nil {
			t.Errorf("no panel shows %s", name)
		}
	}

	served, labels := scrapeFreshDaemon(t)
	// The labels a query groups by are labels of its metric.
	byRE := regexp.MustCompile(`by \(([a-z_, ]+)\) \((?:rate\()?(puaside_[a-z_]+)`)
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, m := range byRE.FindAllStringSubmatch(tg.Expr, -1) {
				for _, l := range strings.Split(m[1], ",") {
					if l = strings.TrimSpace(l); l != "le" && !labels[m[2]][l] {
						t.Errorf("panel %q groups %s by %q, a label it does not have", p.Title, m[2], l)
					}
				}
			}
		}
	}
	var missing []string
	for name, panels := range used {
		base := name
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suf); ok && served[b] == model.MetricTypeHistogram {
				base = b
			}
		}
		if _, ok := served[base]; !ok {
			missing = append(missing, name+" (panels "+strings.Join(panels, ", ")+")")
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("the dashboard uses %s, not in /metrics", m)
	}
}

// scrapeFreshDaemon starts a daemon on loopback (every tracker on, SQLite,
// no upstream presence server answering, pa on as well) and returns the
// metric families of its /metrics with their types, and the label names
// of each series (histograms' by their _bucket name).
func scrapeFreshDaemon(t *testing.T) (map[string]model.MetricType, map[string]map[string]bool) {
	t.Helper()
	cfg := config.Default()
	cfg.DBURL = "sqlite://" + filepath.Join(t.TempDir(), "puaside.db")
	cfg.Features.BLA = true
	cfg.PUA.Listen = []string{"udp:127.0.0.1:0"}
	cfg.PUA.ServerAddress = "sip:127.0.0.1:9"
	cfg.PA.Mode, cfg.PA.Listen = "on", []string{"udp:127.0.0.1:0"}
	cfg.Ingest.ReplicateListen = []string{"udp:127.0.0.1:0"}
	cfg.Ingest.TraceListen, cfg.Ingest.HEPListen = nil, nil
	cfg.HTTP.HTTPListen = "127.0.0.1:0"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := daemon.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = d.Stop(sctx)
	})
	c := &http.Client{Timeout: 10 * time.Second}
	res, err := c.Get("http://" + d.Addrs()["http"][0] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]model.MetricType{}
	labels := map[string]map[string]bool{}
	for name, f := range fams {
		if len(f.GetMetric()) == 0 {
			continue
		}
		key := name
		switch f.GetType().String() {
		case "HISTOGRAM":
			out[name] = model.MetricTypeHistogram
			key = name + "_bucket"
		default:
			out[name] = model.MetricTypeUnknown
		}
		labels[key] = map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				labels[key][l.GetName()] = true
			}
		}
	}
	return out, labels
}
