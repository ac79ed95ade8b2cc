package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// gogcPercent reads go_gc_gogc_percent from the daemon's metrics.
func gogcPercent(t *testing.T, base string) float64 {
	t.Helper()
	for _, l := range strings.Split(get(t, base+"/metrics"), "\n") {
		if v, ok := strings.CutPrefix(l, "go_gc_gogc_percent "); ok {
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
			writeQuietConfig(t, cfgPath, filepath.Join(dir, fmt.Sprintf("floor%d.db", c.floor)),
				fmt.Sprintf("heap_floor_mib: %d\n", c.floor))
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
