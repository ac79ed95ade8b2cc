package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// metric reads the unlabelled metric name from the daemon's metrics.
func metric(t *testing.T, base, name string) float64 {
	t.Helper()
	for _, l := range strings.Split(get(t, base+"/metrics"), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no %s in the metrics", name)
	return 0
}

// TestHeapFloorApplied runs the binary with heap_floor_mib and without: a
// floor far above the few MiB an idle daemon holds raises the collector's
// percentage above GOGC's and puts the next collection at the floor; 0
// leaves GOGC's, and the next collection at a few MiB.
func TestHeapFloorApplied(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	const mib = 1 << 20
	for _, c := range []struct {
		floor              int
		percentMin, maxPct float64
		nextMin, nextMax   float64
	}{
		{4096, 1000, 1e9, 4000 * mib, 4200 * mib},
		{0, 100, 100, 1, 256 * mib},
	} {
		t.Run(fmt.Sprint(c.floor), func(t *testing.T) {
			cfgPath := filepath.Join(dir, fmt.Sprintf("floor%d.yaml", c.floor))
			writeQuietConfig(t, cfgPath, filepath.Join(dir, fmt.Sprintf("floor%d.db", c.floor)),
				fmt.Sprintf("heap_floor_mib: %d\n", c.floor))
			d := startDaemon(t, bin, cfgPath, "GOGC=100")
			base := "http://" + d.httpAddr()
			if p := metric(t, base, "go_gc_gogc_percent"); p < c.percentMin || p > c.maxPct {
				t.Errorf("go_gc_gogc_percent %v, want between %v and %v", p, c.percentMin, c.maxPct)
			}
			if n := metric(t, base, "go_memstats_next_gc_bytes"); n < c.nextMin || n > c.nextMax {
				t.Errorf("go_memstats_next_gc_bytes %.0f MiB, want between %.0f and %.0f MiB", n/mib, c.nextMin/mib, c.nextMax/mib)
			}
			d.signal(syscall.SIGTERM)
			d.waitExit()
		})
	}
}
