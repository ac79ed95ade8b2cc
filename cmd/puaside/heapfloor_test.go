package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// gogcPercent reads go_gc_gogc_percent from the daemon's metrics.
func gogcPercent(t *testing.T, base string) float64 {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	res, err := c.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_gc_gogc_percent "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatal("no go_gc_gogc_percent in the metrics")
	return 0
}

// TestHeapFloorApplied runs the binary with heap_floor_mib and without: a
// floor far above the few MiB an idle daemon holds raises the collector's
// percentage above GOGC's, 0 leaves GOGC's.
func TestHeapFloorApplied(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	for _, c := range []struct {
		floor   int
		atLeast float64
		atMost  float64
	}{
		{4096, 1000, 1e9},
		{0, 100, 100},
	} {
		t.Run(fmt.Sprint(c.floor), func(t *testing.T) {
			cfgPath := filepath.Join(dir, fmt.Sprintf("floor%d.yaml", c.floor))
			doc := fmt.Sprintf(`heap_floor_mib: %d
db_url: sqlite://%s
pua:
  listen: ["udp:127.0.0.1:0"]
  server_address: sip:127.0.0.1:9
ingest:
  replicate_listen: []
  trace_listen: []
  hep_listen: []
http:
  http_listen: 127.0.0.1:0
`, c.floor, filepath.Join(dir, fmt.Sprintf("floor%d.db", c.floor)))
			if err := os.WriteFile(cfgPath, []byte(doc), 0o600); err != nil {
				t.Fatal(err)
			}
			d := startDaemon(t, bin, cfgPath, "GOGC=100")
			base := "http://" + d.httpAddr()
			if p := gogcPercent(t, base); p < c.atLeast || p > c.atMost {
				t.Errorf("go_gc_gogc_percent %v, want between %v and %v", p, c.atLeast, c.atMost)
			}
			d.signal(syscall.SIGTERM)
			d.waitExit()
		})
	}
}
