package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuTime returns the CPU time (user+system) used by this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// udpRcvbufErrors reads the host's UDP RcvbufErrors counter.
func udpRcvbufErrors() (int64, error) {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0, err
	}
	var names []string
	for l := range strings.Lines(string(b)) {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				return strconv.ParseInt(f[i], 10, 64)
			}
		}
	}
	return 0, errors.New("no Udp RcvbufErrors in /proc/net/snmp")
}

// socketDrops reads the drop counter of the UDP socket bound to addr
// ("127.0.0.1:port") from /proc/net/udp.
func socketDrops(addr string) (int64, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return 0, fmt.Errorf("socket %q: not an IPv4 address", addr)
	}
	ip := ap.Addr().As4()
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], ap.Port())
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return 0, err
	}
	for l := range strings.Lines(string(b)) {
		f := strings.Fields(l)
		if len(f) > 12 && f[1] == want {
			return strconv.ParseInt(f[len(f)-1], 10, 64)
		}
	}
	return 0, fmt.Errorf("socket %s not in /proc/net/udp", addr)
}

// scrape reads puaside's ingest drops and PUBLISH statuses from /metrics.
func scrape(ctx context.Context, addr string) (drops, publish map[string]float64) {
	drops, publish = map[string]float64{}, map[string]float64{}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		l := sc.Text()
		series, val, ok := strings.Cut(l, " ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(series, "puaside_ingest_dropped_total{"):
			drops[label(series, "input")+"/"+label(series, "reason")] += f
		case strings.HasPrefix(series, "puaside_sip_requests_total{") && label(series, "method") == "PUBLISH":
			publish[label(series, "status")] += f
		}
	}
	return drops, publish
}

// label returns the value of label k in a Prometheus series name.
func label(series, k string) string {
	_, rest, ok := strings.Cut(series, k+`="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

// pct returns the p-th percentile (nearest rank; p may be 99.9) of sorted
// durations in milliseconds.
func pct(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	pm := int(math.Round(p * 10)) // per mille, exact for 99.9
	i := (len(sorted)*pm + 999) / 1000
	return ms(sorted[max(0, min(i, len(sorted))-1)])
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
